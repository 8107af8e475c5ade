"""docs/cli.md, docs/configuration-reference.md and the shipped registry schema are what
tools/generate.py makes from the code now (run `make generated` after changing the CLI or a
config model)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate", ROOT / "tools" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_files_are_current() -> None:
    tool = generator()
    stale = [str(path.relative_to(ROOT)) for path in tool.stale(tool.outputs())]
    assert stale == [], f"stale: {stale}; run `make generated`"


def test_cli_reference_has_every_command() -> None:
    from module_system.cli import main

    text = generator().cli_reference()
    for name in main.commands:
        assert f"## `module-system {name}`" in text
    assert "Usage: module-system serve [OPTIONS]" in text


def test_configuration_reference_links_resolve() -> None:
    text = generator().configuration_reference(generator().registry_schema.shipped())
    anchors = {line.split('"')[1] for line in text.splitlines() if line.startswith("<a id=")}
    anchors |= {"validation"}  # the "`validation:`" heading's own anchor
    for target in {part.split(")")[0] for part in text.split("](#")[1:]}:
        assert target in anchors, target
