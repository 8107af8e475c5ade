"""Fixtures for FTP/FTPS/SFTP tests, registered for every test module by
``tests/conftest.py``; jobs against these servers run with its ``run_job``.

``remote`` is an FTP server in one run of a test and an SFTP server in the other: the
scenarios both protocols share are written once against it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.ftp_servers import FileServer, FtpServer, SftpServer, make_tree


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway CA (the file the tests trust) and a server certificate for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(folder / "server.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    return {"server": folder / "server.pem", "ca": folder / "ca.pem"}


@pytest.fixture
def ftp_root(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "ftp-root")


@pytest.fixture
def ftp_server(ftp_root: Path, tls_files: dict[str, Path]) -> Iterator[Callable[..., FtpServer]]:
    """``ftp_server("plain" | "nomlsd" | "dos" | "dropping" | "explicit" | "implicit")``."""
    started: list[FtpServer] = []

    def start(kind: str = "plain", root: Path | None = None) -> FtpServer:
        server = FtpServer(root or ftp_root, kind, tls_files["server"]).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def file_servers(
    ftp_server: Callable[..., FtpServer], ftp_root: Path, tmp_path: Path
) -> Iterator[Callable[..., FileServer]]:
    """``file_servers("ftp" | "sftp", root=None, kind="plain", **state)``: a server of
    either protocol (``kind`` picks the FTP flavour); ``state`` sets fault switches such
    as ``drops`` and ``drop_after`` (an FTP server that drops is of the "dropping" kind)."""
    sftp_servers: list[SftpServer] = []

    def start(
        protocol: str, root: Path | None = None, kind: str = "plain", **state: Any
    ) -> FileServer:
        if protocol == "ftp":
            ftp = ftp_server("dropping" if state.get("drops") else kind, root)
            ftp.state.update(state)
            return FileServer("ftp", ftp.port, ftp.state)
        sftp = SftpServer(root or ftp_root).start()
        sftp_servers.append(sftp)
        sftp.state.update(state)
        known_hosts = tmp_path / f"known_hosts_{sftp.port}"
        known_hosts.write_text(sftp.known_hosts_line())
        return FileServer("sftp", sftp.port, sftp.state, known_hosts)

    yield start
    for server in sftp_servers:
        server.stop()


@pytest.fixture(params=["ftp", "sftp"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def remote(file_servers: Callable[..., FileServer], protocol: str) -> FileServer:
    """A server of each protocol in turn, serving ``ftp_root``."""
    return file_servers(protocol)
