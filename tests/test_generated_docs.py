"""docs/cli.md, docs/configuration-reference.md and the shipped registry schema are what
tools/generate.py makes from the code now (run `make generated` after changing the CLI or a
config model)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
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
    # A fresh process: source types or validators other tests register stay out of it.
    done = subprocess.run(
        [sys.executable, "tools/generate.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


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
