"""The registry's JSON Schema: current, valid 2020-12, and in agreement with the loader on
the repository's registry, every YAML example in the docs, and files it must reject."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from module_system.cli import main as cli_main
from module_system.config import load_registry
from module_system.config.schema import generate, keys_without_description, shipped
from module_system.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([*ROOT.glob("docs/**/*.md"), ROOT / "README.md"])
LANDING = {"bucket": "landing-bucket"}


def validator(schema: dict[str, Any] | None = None) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema or shipped())


def problems(document: Any, schema: dict[str, Any] | None = None) -> list[str]:
    found = validator(schema).iter_errors(document)
    return [f"{e.json_path}: {e.message[:300]}" for e in found]


def test_shipped_schema_is_current() -> None:
    # A fresh process: source types or validators other tests register stay out of it.
    done = subprocess.run(
        [sys.executable, "-m", "module_system", "schema", "--installed"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(done.stdout) == shipped(), (
        "module_system/config/registry.schema.json is stale: run `make generated`"
    )


def test_generated_schema_covers_the_registered_types() -> None:
    branches = generate(["s3", "ftp"])["$defs"]["Service"]["oneOf"]
    assert [b["properties"]["type"]["const"] for b in branches] == ["s3", "ftp"]


def test_schema_is_valid_2020_12() -> None:
    schema = shipped()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_cli_prints_the_shipped_schema() -> None:
    done = CliRunner().invoke(cli_main, ["schema"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == shipped()


def test_each_service_type_is_one_branch() -> None:
    branches = shipped()["$defs"]["Service"]["oneOf"]
    assert sorted(b["properties"]["type"]["const"] for b in branches) == [
        "api", "ftp", "s3", "sftp", "web",
    ]  # fmt: skip


def test_registry_examples_are_found() -> None:
    found = {where.split("#")[0] for where, _ in yaml_examples()}
    assert {"docs/configuration.md", "docs/cookbook.md", "docs/sources/web.md"} <= found


def test_repository_registry_validates() -> None:
    raw = yaml.safe_load((ROOT / "project_registry.yaml").read_text())
    assert problems(raw) == []


REGISTRY_KEYS = {"landing", "services", "validation"}


def yaml_examples() -> list[tuple[str, str]]:
    """Every YAML block of the docs that shows a registry or part of one (other YAML, such
    as a Prometheus or compose file, is left alone)."""
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for number, match in enumerate(re.finditer(r"```ya?ml\n(.*?)```", text, re.S), 1):
            raw = yaml.safe_load(match.group(1))
            if isinstance(raw, dict) and set(raw) & REGISTRY_KEYS:
                found.append((f"{path.relative_to(ROOT)}#{number}", match.group(1)))
    return found


@pytest.mark.parametrize(("where", "text"), yaml_examples(), ids=lambda v: str(v)[:40])
def test_docs_yaml_examples_validate(where: str, text: str) -> None:
    raw = yaml.safe_load(text)
    schema = shipped()
    if "services" in raw:  # a registry, perhaps without its landing block
        document, target = {"landing": LANDING, **raw}, schema
    elif set(raw) == {"validation"}:  # a service's validation block alone
        document = raw["validation"]
        target = {**schema, "$ref": "#/$defs/Validation", "properties": {}, "required": []}
        target.pop("additionalProperties")
    else:
        pytest.fail(f"{where}: a validation block must stand alone, else show a registry")
    assert problems(document, target) == [], where


REJECTED = {
    "unknown top-level key": {"landing": LANDING, "services": {}, "extra": 1},
    "unknown source key": {"s3": {"type": "s3", "source": {"bucket": "b", "buckett": 1}}},
    "unknown type": {"x": {"type": "gopher", "source": {}}},
    "port not a number": {"f": {"type": "ftp", "source": {"host": "h", "port": "abc"}}},
    "bad service id": {"a b": {"type": "s3", "source": {"bucket": "bucket"}}},
    "unknown validator": {"s": {"type": "s3", "source": {"bucket": "b"}, "validation": {"x": {}}}},
}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_schema_rejects_what_the_loader_rejects(case: str, tmp_path: Path) -> None:
    raw = REJECTED[case]
    document = raw if "landing" in raw else {"landing": LANDING, "services": raw}
    assert problems(document), case
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError):
        load_registry(tmp_path / "r.yaml", env={})


def test_interpolated_numbers_and_schema_paths_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "sales.json").write_text(json.dumps({"fields": [{"name": "id"}]}))
    document = {
        "landing": {"bucket": "${LANDING:-landing-bucket}"},
        "services": {
            "ftp_sales": {
                "type": "ftp",
                "source": {"host": "127.0.0.1", "port": "${FTP_PORT:-21}", "path": "/out"},
                "validation": {"csv": {"table_schema": "sales.json"}},
                "concurrency": "${CONCURRENCY:-4}",
            }
        },
    }
    assert problems(document) == []
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(document))
    assert load_registry(tmp_path / "r.yaml", env={}).services["ftp_sales"].concurrency == 4


def test_keys_without_description_are_found() -> None:
    schema = {"$defs": {"M": {"properties": {"a": {"type": "string"}, "b": {"description": "x"}}}}}
    assert keys_without_description(schema) == ["M.a"]


def test_every_key_of_the_shipped_schema_has_a_description() -> None:
    # Editors show these as the keys' hover text, and configuration-reference.md lists them.
    assert keys_without_description(shipped()) == []
