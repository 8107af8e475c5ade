"""Every mermaid diagram in the docs parses: mermaid's own parser (the npm package, installed
by make beside dclint) runs in the system Chromium through Playwright."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MERMAID = ROOT / ".venv" / "node" / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PARSE = """async (code) => {
    try { await mermaid.parse(code); return ""; } catch (e) { return String(e.message || e); }
}"""


def diagrams() -> list[tuple[str, str]]:
    found = []
    for path in sorted([*ROOT.glob("docs/**/*.md"), ROOT / "README.md"]):
        blocks = re.findall(r"```mermaid\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
        found += [(f"{path.relative_to(ROOT)}#{n}", code) for n, code in enumerate(blocks, 1)]
    return found


def test_the_flow_documents_have_diagrams() -> None:
    where = {name.split("#")[0] for name, _ in diagrams()}
    assert {"docs/SYSTEM_ARCHITECTURE.md", "docs/SOURCE_TYPE_FLOWS.md",
            "docs/IMPROVED_HTML_FLOWS.md"} <= where  # fmt: skip


@pytest.mark.skipif(not (MERMAID.exists() and CHROMIUM), reason="needs mermaid (npm) and chromium")
def test_every_mermaid_diagram_parses() -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page()
            page.set_content("<html><body></body></html>")
            page.add_script_tag(path=str(MERMAID))
            errors = {name: page.evaluate(PARSE, code) for name, code in diagrams()}
        finally:
            browser.close()
    assert {name: error for name, error in errors.items() if error} == {}
