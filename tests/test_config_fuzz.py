"""Property tests of the config loader: whatever a registry or batch file holds, the user
gets a registry or problems that name the file (exit 2), never a traceback.

The runs are short by default; ``FUZZ_EXAMPLES=20000 pytest -m fuzz`` runs long ones.
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from module_system.cli import main
from module_system.config import Registry, load_batch, load_registry
from module_system.config.interpolate import MissingVariable, interpolate
from module_system.errors import ConfigError
from module_system.observability.redaction import forget_secrets

pytestmark = pytest.mark.fuzz

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- what a config file may hold ------------------------------------------------------------

YAML_TOKENS = [*"{}[]:,-&*!|>'\"#%@?<=~. \n\t$abz019", "${A}", "${A:-x}", "&a", "*a", "<<"]
yaml_texts = st.lists(st.sampled_from(YAML_TOKENS) | st.characters(), max_size=60).map("".join)
scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.dates()
    | st.text(max_size=12) | st.sampled_from(["${A}", "${A:-x}", "s3", "*.csv", "ftp://u:p@h"])
)  # fmt: skip
keys = st.text(max_size=10) | st.integers() | st.booleans() | st.none()
trees = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
source_types = st.sampled_from(["s3", "ftp", "sftp", "web", "api", "gopher"]) | trees
validators = st.dictionaries(st.sampled_from(["json_schema", "csv", "html", "xml"]), trees)
services = st.fixed_dictionaries(
    {},
    optional={
        "type": source_types, "source": trees, "validation": validators | trees,
        "retry": trees, "concurrency": trees, "timeout": trees, "extract": trees,
    },
)  # fmt: skip
registries = st.fixed_dictionaries(
    {},
    optional={
        "landing": st.fixed_dictionaries({"bucket": st.text(max_size=8)}, optional={
            "prefix": trees, "endpoint_url": trees, "retry": trees}) | trees,
        "services": st.dictionaries(keys, services | trees, max_size=3) | trees,
        "other": trees,
    },
)  # fmt: skip

RECURSIVE_ALIAS = "landing: &l {bucket: abc, x: *l}\nservices: {}\n"
BILLION_LAUGHS = (
    "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcde", "bcdef", strict=True)
    )
    + "landing: {bucket: abc}\nservices: {s: {type: s3, source: *f}}\n"
)
DEEP = "landing: {bucket: abc}\nservices: {s: {type: s3, source: " + "[" * 600 + "]" * 600 + "}}"
MIXED_KEYS = "landing: {bucket: abc}\nservices: {}\n1: x\nb: y\n"
NOT_UTF8 = "landing: {bucket: caf\udce9}\n"  # written with surrogateescape: a lone 0xE9 byte


def write(path: Path, text: str) -> Path:
    """Lone surrogates in ``text`` become bytes that are not UTF-8."""
    try:
        path.write_bytes(text.encode("utf-8", "surrogateescape"))  # \udce9 -> b"\xe9"
    except UnicodeEncodeError:
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
    return path


def registry_or_problems(path: Path) -> Registry | list[str]:
    forget_secrets()  # a short secret of one example must not mask the path in the next
    try:
        return load_registry(path, env={})
    except ConfigError as exc:
        return exc.problems


def assert_problems_name_the_file(path: Path, outcome: Registry | list[str]) -> None:
    if isinstance(outcome, list):
        assert outcome, "a ConfigError without a problem"
        assert all(problem.startswith(f"{path}: ") for problem in outcome), outcome


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(text=yaml_texts)
@example(text=RECURSIVE_ALIAS)
@example(text=BILLION_LAUGHS)
@example(text=DEEP)
@example(text=MIXED_KEYS)
@example(text=NOT_UTF8)
def test_any_registry_text_loads_or_names_the_file(folder: Path, text: str) -> None:
    path = write(folder / "registry.yaml", text)
    assert_problems_name_the_file(path, registry_or_problems(path))


@FUZZ
@given(data=registries)
def test_any_registry_structure_loads_or_names_the_file(folder: Path, data: Any) -> None:
    path = write(folder / "registry.yaml", yaml.safe_dump(data, allow_unicode=True))
    assert_problems_name_the_file(path, registry_or_problems(path))


@FUZZ
@given(text=yaml_texts | registries.map(lambda d: yaml.safe_dump(d, allow_unicode=True)))
@example(text=BILLION_LAUGHS)
@example(text=NOT_UTF8)
def test_cli_check_exits_0_or_2_never_with_a_traceback(folder: Path, text: str) -> None:
    path = write(folder / "registry.yaml", text)
    forget_secrets()
    result = CliRunner().invoke(main, ["check", "--registry", str(path)])
    assert result.exit_code in (0, 2), result.output
    assert isinstance(result.exception, SystemExit | None), result.exception
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert f"  {path}: " in result.output


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
batches = st.fixed_dictionaries(
    {"jobs": st.lists(st.fixed_dictionaries({}, optional={
        "job_id": json_values | st.text(string.ascii_letters, max_size=5),
        "service_id": json_values | st.just("svc")}) | json_values, max_size=4) | json_values},
    optional={"description": json_values},
)  # fmt: skip


@FUZZ
@given(text=st.text(max_size=60) | batches.map(json.dumps) | json_values.map(json.dumps))
@example(text="[" * 100_000)
@example(text='{"jobs": "\udce9"}')
def test_any_batch_file_loads_or_names_the_file(folder: Path, text: str) -> None:
    path = write(folder / "batch.json", text)
    registry = Registry.model_validate({"landing": {"bucket": "land"}, "services": {"svc": {
        "type": "s3", "source": {"bucket": "src"}}}})  # fmt: skip
    try:
        load_batch(path, registry)
    except ConfigError as exc:
        assert_problems_name_the_file(path, exc.problems)


def test_a_folder_given_as_the_registry_is_a_config_error(tmp_path: Path) -> None:
    (problem,) = registry_or_problems(tmp_path)
    assert problem.startswith(f"{tmp_path}: cannot read the registry file")


def test_problems_found_by_the_fuzzers_have_clear_messages(tmp_path: Path) -> None:
    def problem(text: str) -> str:
        return "\n".join(registry_or_problems(write(tmp_path / "r.yaml", text)))  # type: ignore[arg-type]

    assert "a YAML alias that refers to itself" in problem(RECURSIVE_ALIAS)
    assert "too large (more than 100000 values" in problem(BILLION_LAUGHS)
    assert "nested too deeply" in problem(DEEP)
    assert "unknown top-level key '1'" in problem(MIXED_KEYS)
    assert "not UTF-8 text (byte 21)" in problem(NOT_UTF8)


# --- ${VAR} interpolation ------------------------------------------------------------------

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
environments = st.dictionaries(names, st.text(max_size=10), max_size=5)


@FUZZ
@given(text=st.text(max_size=40), env=environments)
def test_interpolation_never_fails_except_for_a_missing_variable(
    text: str, env: dict[str, str]
) -> None:
    try:
        result = interpolate(text, env)
    except MissingVariable as exc:
        assert exc.name not in env and f"${{{exc.name}" in text
    else:
        assert isinstance(result, str)
        if "${" not in text:
            assert result == text


@FUZZ
@given(name=names, value=st.text(max_size=10), default=st.text(max_size=10).filter(
    lambda d: "}" not in d), prefix=st.text(max_size=5), suffix=st.text(max_size=5))  # fmt: skip
def test_a_variable_expands_to_its_value_or_default_once(
    name: str, value: str, default: str, prefix: str, suffix: str
) -> None:
    for piece in (prefix, suffix):  # keep the surroundings free of references
        if "${" in piece or piece.endswith("$") or piece.startswith("{"):
            return
    template = f"{prefix}${{{name}}}{suffix}"
    with_default = f"{prefix}${{{name}:-{default}}}{suffix}"
    # A value that itself looks like a reference is not expanded again.
    env = {name: value, "OTHER": "expanded twice"}
    assert interpolate(template, env) == prefix + value + suffix
    assert interpolate(with_default, env) == prefix + value + suffix
    assert interpolate(with_default, {}) == prefix + default + suffix
    assert interpolate(f"${{{name}}}", {name: "${OTHER}", "OTHER": "x"}) == "${OTHER}"


@FUZZ
@given(data=trees, env=environments)
def test_interpolation_keeps_the_shape_of_the_data(data: Any, env: dict[str, str]) -> None:
    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items()}
        if isinstance(value, list):
            return [shape(v) for v in value]
        return str if isinstance(value, str) else value

    try:
        result = interpolate(data, {**env, "A": "a"})
    except MissingVariable:
        return
    assert shape(result) == shape(data)
