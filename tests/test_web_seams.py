"""Seams of the web source (issue 9): the text decoding helpers live in a neutral module
that sources and validators both import, neither side imports the other, the web source
does not import the package root, and closing the source closes the crawler."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

import module_system
from module_system._version import __version__
from module_system.config.models import RetryConfig
from module_system.sources.base import SourceContext
from module_system.sources.crawl.crawler import Crawler
from module_system.sources.web import DEFAULT_USER_AGENT, WebSource, WebSourceConfig
from module_system.state import StateStore

PACKAGE = Path(module_system.__file__).parent
WEB_MODULES = [
    PACKAGE / "sources" / "web.py",
    *sorted((PACKAGE / "sources" / "crawl").glob("*.py")),
]


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, ``from a import b`` counted as ``a`` and ``a.b``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", WEB_MODULES, ids=lambda p: p.name)
def test_the_web_source_imports_neither_the_package_root_nor_validators(path: Path) -> None:
    imports = imported_modules(path)
    assert "module_system" not in imports and "module_system.__name__" not in imports
    assert not {name for name in imports if name.startswith("module_system.validation")}


def test_validators_do_not_import_sources_for_decoding() -> None:
    imports = imported_modules(PACKAGE / "validation" / "html.py")
    assert not {name for name in imports if name.startswith("module_system.sources")}
    assert "module_system.text_encoding" in imports


def test_the_default_user_agent_names_the_package_version() -> None:
    assert DEFAULT_USER_AGENT.startswith(f"module-system/{__version__} (")


def test_closing_the_source_closes_the_crawler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[Crawler] = []
    close = Crawler.close

    def recording_close(crawler: Crawler) -> None:
        closed.append(crawler)
        close(crawler)

    monkeypatch.setattr(Crawler, "close", recording_close)
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    context = SourceContext(
        "svc", "job", "run", RetryConfig(attempts=1), state.cursors_for("svc"),
        logging.getLogger("test"),
    )  # fmt: skip
    try:
        config = WebSourceConfig.model_validate({"start_urls": ["http://127.0.0.1:9/"]})
        with WebSource.from_config(config, context) as web:
            pass
    finally:
        state.close()
    assert closed == [web.crawler]
