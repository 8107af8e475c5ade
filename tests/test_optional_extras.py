"""Extras: without the library an extra brings, the feature fails with a message that names
the extra, and the CSV validator falls back to its pure-Python path without pyarrow.

A missing library is simulated in a child process: a ``sitecustomize`` module sets
``sys.modules[name] = None`` before anything is imported, which makes ``import name``
fail exactly as it does when the package is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from module_system._optional import EXTRA_OF_MODULE, MissingExtra, require

BLOCKER = """
import os, sys
for name in os.environ.get("BLOCK_MODULES", "").split(","):
    if name:
        sys.modules[name] = None
"""


def run_without(modules: list[str], args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python args...`` in a child process in which ``modules`` cannot be imported."""
    site = cwd / "blocker"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(site), "BLOCK_MODULES": ",".join(modules)}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


REGISTRY = """
landing: {bucket: landing-bucket}
services:
  files_over_sftp:
    type: sftp
    source: {host: 127.0.0.1, username: demo, path: /out, known_hosts: known_hosts}
  pages:
    type: web
    source: {start_urls: ["http://127.0.0.1:9/"]}
"""


@pytest.mark.parametrize(
    ("blocked", "service", "extra"),
    [("paramiko", "files_over_sftp", "sftp"), ("selectolax", "pages", "web")],
)
def test_check_names_the_missing_extra(
    tmp_path: Path, blocked: str, service: str, extra: str
) -> None:
    body = yaml_with_only(service)
    (tmp_path / "registry.yaml").write_text(body)
    done = run_without(
        [blocked], ["-m", "module_system", "check", "--registry", "registry.yaml"], tmp_path
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"pip install 'module-system[{extra}]'" in done.stderr
    assert f"'{blocked}'" in done.stderr
    assert "Traceback" not in done.stderr


def yaml_with_only(service: str) -> str:
    import yaml

    raw = yaml.safe_load(REGISTRY)
    raw["services"] = {service: raw["services"][service]}
    return yaml.safe_dump(raw)


def test_the_same_registry_checks_with_the_extras_installed(tmp_path: Path) -> None:
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "registry.yaml").write_text(REGISTRY)
    done = run_without(
        [], ["-m", "module_system", "check", "--registry", "registry.yaml"], tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: 2 services" in done.stdout


def test_postgres_state_store_without_psycopg_names_the_extra(tmp_path: Path) -> None:
    done = run_without(
        ["psycopg"],
        ["-m", "module_system", "history", "--state-url", "postgresql://u:hunter2@127.0.0.1/x"],
        tmp_path,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "pip install 'module-system[postgres]'" in done.stderr
    assert "hunter2" not in done.stderr  # the URL is masked


def test_csv_validator_uses_pure_python_without_pyarrow(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i * 1.5:.2f}\n" for i in range(200_000))  # over the fast-path size
    (tmp_path / "big.csv").write_text("id,amount\n" + rows + "x,1.00\n")
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from module_system.validation import csv as csv_module
        from module_system.validation.csv import CsvValidator

        schema = {"fields": [{"name": "id", "type": "integer"},
                             {"name": "amount", "type": "number"}]}
        validator = CsvValidator(CsvValidator.parse_options({"table_schema": schema}, Path(".")))
        verdict = validator.validate(Path("big.csv"), "big.csv")
        print(csv_module.FAST_PATH, "pyarrow" in sys.modules and sys.modules["pyarrow"] is not None)
        print(verdict.valid, verdict.records, verdict.error_count, verdict.issues[0].location)
        """
    )
    done = run_without(["pyarrow"], ["-c", script], tmp_path)
    assert done.returncode == 0, done.stderr
    paths, verdict = done.stdout.splitlines()
    assert paths == "False False"  # no fast path, pyarrow never imported
    valid, records, errors, location = verdict.split(" ", 3)
    assert (valid, records, errors) == ("False", "200001", "1")
    assert "200002" in location  # the bad row, counted from the header line


def test_require_names_extra_and_module() -> None:
    assert require("json", extra="web").__name__ == "json"
    with pytest.raises(MissingExtra) as caught:
        require("module_system_no_such_library", extra="sftp", what="the 'sftp' source type")
    assert str(caught.value) == (
        "the 'sftp' source type needs the Python package 'module_system_no_such_library', "
        "which is not installed: pip install 'module-system[sftp]'"
    )
    assert caught.value.reason == "missing_extra"


def test_every_extra_named_exists_in_pyproject() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    assert set(EXTRA_OF_MODULE.values()) <= set(extras)
    assert "all" in extras and "module_system[all]" in extras["dev"]
