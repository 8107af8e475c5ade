"""Registry and batch files: every broken input stops with a message naming file, service
or job, and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from module_system.cli import main
from module_system.config import load_batch, load_registry
from module_system.config.interpolate import MissingVariable, interpolate
from module_system.errors import ConfigError
from tests.helpers import write_batch, write_registry

LANDING = {"bucket": "landing-bucket"}


def s3_service(**overrides: object) -> dict[str, object]:
    service: dict[str, object] = {
        "type": "s3",
        "source": {"bucket": "source-bucket", "prefix": "in/", "include": ["*.json"]},
        "validation": {"json_schema": {"type": "object"}},
    }
    service.update(overrides)
    return service


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_registry(path)
    return info.value.problems


def test_valid_registry_is_typed(tmp_path: Path) -> None:
    schema = tmp_path / "schemas" / "s.json"
    schema.parent.mkdir()
    schema.write_text(json.dumps({"type": "object", "required": ["id"]}))
    path = write_registry(
        tmp_path / "r.yaml",
        {"bucket": "land", "prefix": "raw"},
        {"svc": s3_service(validation={"json_schema": "schemas/s.json"})},
    )
    registry = load_registry(path)
    assert registry.landing.prefix == "raw/"
    service = registry.services["svc"]
    assert service.source.bucket == "source-bucket"
    assert service.validation["json_schema"].schema_ == {"type": "object", "required": ["id"]}
    assert service.concurrency == 8


def test_interpolation_with_defaults_and_missing_variable() -> None:
    env = {"HOST": "example.org"}
    assert interpolate({"a": ["${HOST}", "${PORT:-21}", "x${EMPTY:-}y"]}, env) == {
        "a": ["example.org", "21", "xy"]
    }
    with pytest.raises(MissingVariable) as info:
        interpolate({"source": {"bucket": "${BUCKET}"}}, env)
    assert info.value.name == "BUCKET" and info.value.where == "source.bucket"


def test_missing_variable_names_service_and_variable(tmp_path: Path) -> None:
    service = s3_service(source={"bucket": "${NOT_SET_ANYWHERE}"})
    path = write_registry(tmp_path / "r.yaml", LANDING, {"svc": service})
    (problem,) = problems_of(path)
    assert "service 'svc'" in problem
    assert "source.bucket" in problem and "${NOT_SET_ANYWHERE}" in problem


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        (s3_service(type="gopher"), "type: unknown source type 'gopher'"),
        (s3_service(colour="blue"), "colour: Extra inputs are not permitted"),
        (s3_service(concurrency="many"), "concurrency: Input should be a valid integer"),
        (s3_service(source={"prefix": "x/"}), "source.bucket: Field required"),
        (s3_service(source={"bucket": "b", "inclde": ["*"]}), "source.inclde: Extra inputs"),
        (s3_service(validation={"xml": {}}), "validation.xml: unknown validator"),
        (s3_service(validation={"json_schema": "missing.json"}), "schema file not found"),
        (s3_service(validation={"json_schema": {"type": 12}}), "not a valid JSON Schema"),
    ],
)
def test_bad_service_fields(tmp_path: Path, service: dict[str, object], expected: str) -> None:
    path = write_registry(tmp_path / "r.yaml", LANDING, {"svc": service})
    problems = problems_of(path)
    assert len(problems) == 1, problems
    assert str(path) in problems[0] and "service 'svc'" in problems[0]
    assert expected in problems[0]


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    path = write_registry(
        tmp_path / "r.yaml",
        {"bucket": "x"},
        {"a": s3_service(type="nope"), "b": s3_service(source={})},
    )
    problems = problems_of(path)
    assert any("landing: bucket" in p for p in problems)
    assert any("service 'a'" in p for p in problems)
    assert any("service 'b'" in p for p in problems)


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("landing: [unclosed\n")
    assert "not valid YAML" in problems_of(bad)[0]
    assert "registry file not found" in problems_of(tmp_path / "nope.yaml")[0]


def test_batch_file_problems(tmp_path: Path) -> None:
    registry = load_registry(write_registry(tmp_path / "r.yaml", LANDING, {"svc": s3_service()}))
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_batch(bad_json, registry)
    dup = write_batch(tmp_path / "dup.json", [("j1", "svc"), ("j1", "svc")])
    with pytest.raises(ConfigError, match="job 'j1': job_id: duplicate job_id"):
        load_batch(dup, registry)
    unknown = write_batch(tmp_path / "unknown.json", [("j1", "other")])
    with pytest.raises(ConfigError, match="job 'j1': service_id: unknown service 'other'"):
        load_batch(unknown, registry)
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"jobs": [{"job_id": "j9"}]}))
    with pytest.raises(ConfigError, match="job #1 'j9': service_id: Field required"):
        load_batch(missing, registry)


def test_cli_config_error_exits_2_before_any_job(tmp_path: Path) -> None:
    registry = write_registry(tmp_path / "r.yaml", LANDING, {"svc": s3_service(type="nope")})
    batch = write_batch(tmp_path / "b.json", [("j1", "svc")])
    result = CliRunner().invoke(
        main,
        ["run", "--batch-file", str(batch), "--registry", str(registry),
         "--state-url", f"sqlite:///{tmp_path / 's.db'}", "--log-dir", str(tmp_path / "logs")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "unknown source type 'nope'" in result.output
    assert not (tmp_path / "s.db").exists()


def test_cli_check(tmp_path: Path) -> None:
    registry = write_registry(tmp_path / "r.yaml", LANDING, {"svc": s3_service()})
    batch = write_batch(tmp_path / "b.json", [("j1", "svc"), ("j2", "svc")])
    ok = CliRunner().invoke(
        main, ["check", "--registry", str(registry), "--batch-file", str(batch)]
    )
    assert ok.exit_code == 0 and "OK: 1 services, 2 jobs" in ok.output
    bad = write_batch(tmp_path / "bad.json", [("j1", "ghost")])
    result = CliRunner().invoke(
        main, ["check", "--registry", str(registry), "--batch-file", str(bad)]
    )
    assert result.exit_code == 2 and "unknown service 'ghost'" in result.output


def test_secret_keys_are_secret_typed(tmp_path: Path) -> None:
    source = {
        "bucket": "bkt",
        "aws_access_key_id": "AKIAEXAMPLE",
        "aws_secret_access_key": "s3cr3t-value",
    }
    path = write_registry(tmp_path / "r.yaml", LANDING, {"svc": s3_service(source=source)})
    service = load_registry(path).services["svc"]
    assert "s3cr3t-value" not in repr(service)
    assert service.source.aws_secret_access_key.get_secret_value() == "s3cr3t-value"


def test_yaml_errors_do_not_quote_the_line(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text('landing:\n  bucket: b\n  aws_secret_access_key: "SuperSecretValue123" x\n')
    (problem,) = problems_of(path)
    assert "SuperSecretValue123" not in problem
    assert "not valid YAML" in problem and "line 3" in problem


def test_service_ids_must_be_path_safe(tmp_path: Path) -> None:
    path = write_registry(tmp_path / "r.yaml", LANDING, {"../evil": s3_service()})
    (problem,) = problems_of(path)
    assert "service '../evil'" in problem and "letters, digits" in problem


def test_bad_state_url_exits_2(tmp_path: Path) -> None:
    registry = write_registry(tmp_path / "r.yaml", LANDING, {"svc": s3_service()})
    batch = write_batch(tmp_path / "b.json", [("j1", "svc")])
    result = CliRunner().invoke(
        main,
        ["run", "--batch-file", str(batch), "--registry", str(registry), "--log-dir",
         str(tmp_path / "logs"), "--state-url", "nosuchdb://user:pw-secret@host/x"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "state store" in result.output and "pw-secret" not in result.output
