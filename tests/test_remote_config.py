"""Registry and batch files from S3 (moto server) and HTTPS (uvicorn with a throwaway CA),
fetched afresh on every use, with errors that name the URL."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvicorn
import yaml
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from module_system.cli import main as cli_main
from module_system.config.remote import TOKEN_ENV, _may_send_token
from module_system.demo.servers import MotoServer

SCHEMA = {"type": "object", "required": ["id"]}
BATCH = {"jobs": [{"job_id": "j1", "service_id": "files"}]}


def registry(services: int = 1, schema_path: str = "schemas/record.schema.json") -> str:
    body = {
        "landing": {"bucket": "landing-bucket"},
        "services": {
            f"files{'' if n == 0 else n}": {
                "type": "s3",
                "source": {"bucket": "source-bucket"},
                "validation": {"json_schema": schema_path},
            }
            for n in range(services)
        },
    }
    return yaml.safe_dump(body)


def check(*args: str) -> Any:
    return CliRunner().invoke(cli_main, ["check", *args])


@pytest.fixture
def config_bucket(s3: Any, s3_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.url)  # boto3 picks it up by itself
    s3.create_bucket(Bucket="team-config")
    s3.put_object(Bucket="team-config", Key="etl/project_registry.yaml", Body=registry())
    s3.put_object(
        Bucket="team-config", Key="etl/schemas/record.schema.json", Body=json.dumps(SCHEMA)
    )
    s3.put_object(Bucket="team-config", Key="etl/jobs.json", Body=json.dumps(BATCH))
    return "s3://team-config/etl"


def test_registry_and_batch_from_s3(config_bucket: str) -> None:
    done = check(
        "--registry", f"{config_bucket}/project_registry.yaml",
        "--batch-file", f"{config_bucket}/jobs.json",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "OK: 1 services, 1 jobs" in done.output


def test_registry_from_the_environment_variable(
    config_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODULE_SYSTEM_REGISTRY", f"{config_bucket}/project_registry.yaml")
    done = check()
    assert done.exit_code == 0, done.output


def test_missing_s3_object_names_the_url(config_bucket: str) -> None:
    done = check("--registry", f"{config_bucket}/nope.yaml")
    assert done.exit_code == 2
    assert f"{config_bucket}/nope.yaml: cannot read it from S3: NoSuchKey" in done.output


def test_each_use_fetches_afresh_and_leaves_no_copy(
    config_bucket: str, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    url = f"{config_bucket}/project_registry.yaml"
    assert "OK: 1 services" in check("--registry", url).output
    s3.put_object(Bucket="team-config", Key="etl/project_registry.yaml", Body=registry(2))
    assert "OK: 2 services" in check("--registry", url).output
    assert list(tmp_path.iterdir()) == []


def test_problems_in_a_remote_registry_name_its_url(config_bucket: str, s3: Any) -> None:
    broken = registry().replace("source-bucket", "x")  # too short for a bucket name
    s3.put_object(Bucket="team-config", Key="etl/broken.yaml", Body=broken)
    done = check("--registry", f"{config_bucket}/broken.yaml")
    assert done.exit_code == 2
    assert f"{config_bucket}/broken.yaml: service 'files'" in done.output
    assert "module-system-config-" not in done.output


def test_schema_paths_outside_the_registry_folder_are_refused(config_bucket: str, s3: Any) -> None:
    s3.put_object(
        Bucket="team-config", Key="etl/escape.yaml", Body=registry(schema_path="../x.json")
    )
    done = check("--registry", f"{config_bucket}/escape.yaml")
    assert done.exit_code == 2
    assert "../x.json: a remote registry may name schema files beside it only" in done.output


class ConfigServer:
    """Serves config files over HTTPS on loopback and remembers Authorization headers."""

    def __init__(self, files: dict[str, str], ca: trustme.CA, folder: Path) -> None:
        self.files, self.seen_auth = files, []
        cert = ca.issue_cert("127.0.0.1")
        cert_file, key_file = folder / "server.pem", folder / "server.key"
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        cert.private_key_pem.write_to_path(str(key_file))
        app = Starlette(routes=[Route("/{path:path}", self.serve)])
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                ssl_certfile=str(cert_file), ssl_keyfile=str(key_file))  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def serve(self, request: Request) -> Response:
        self.seen_auth.append(request.headers.get("authorization"))
        body = self.files.get(request.path_params["path"])
        return PlainTextResponse(body) if body is not None else PlainTextResponse("", 404)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive()
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"https://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def https_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))  # httpx trusts it
    files = {
        "cfg/project_registry.yaml": registry(),
        "cfg/schemas/record.schema.json": json.dumps(SCHEMA),
        "cfg/jobs.json": json.dumps(BATCH),
    }
    server = ConfigServer(files, ca, tmp_path)
    base = server.start()
    yield base, server
    server.stop()


def test_registry_over_https_with_a_bearer_token(
    https_config: tuple[str, ConfigServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, server = https_config
    monkeypatch.setenv(TOKEN_ENV, "config-token-123456")
    done = check(
        "--registry", f"{base}/cfg/project_registry.yaml", "--batch-file", f"{base}/cfg/jobs.json"
    )
    assert done.exit_code == 0, done.output
    assert server.seen_auth == ["Bearer config-token-123456"] * 3  # registry, schema, batch


def test_http_error_names_the_masked_url(https_config: tuple[str, ConfigServer]) -> None:
    base, _ = https_config
    url = base.replace("https://", "https://reader:s3cr3t-pass@") + "/cfg/missing.yaml"
    done = check("--registry", url)
    assert done.exit_code == 2
    assert "HTTP 404" in done.output and "/cfg/missing.yaml" in done.output
    assert "s3cr3t-pass" not in done.output


def test_untrusted_certificate_is_refused(
    https_config: tuple[str, ConfigServer], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    base, server = https_config
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "other-ca.pem"))
    done = check("--registry", f"{base}/cfg/project_registry.yaml")
    assert done.exit_code == 2
    assert "cannot fetch it: ConnectError" in done.output
    assert server.seen_auth == []


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("https://config.example/r.yaml", True),
        ("http://127.0.0.1:8000/r.yaml", True),
        ("http://localhost/r.yaml", True),
        ("http://config.example/r.yaml", False),  # never in clear text across a network
        ("http://10.0.0.5/r.yaml", False),
    ],
)
def test_token_goes_over_https_or_loopback_only(url: str, sent: bool) -> None:
    assert _may_send_token(url) is sent
