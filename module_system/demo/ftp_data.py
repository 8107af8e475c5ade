"""Demo part: a local FTP server (pyftpdlib, in a thread) with daily sales CSV files,
two of them broken on purpose."""

from __future__ import annotations

import gzip
import secrets
import threading
from pathlib import Path

from module_system.demo.context import DemoContext

HEADER = "order_id,amount,currency,day\n"


def _day(n: int) -> str:
    return "".join(
        f"{n * 100 + i},{(i * 7.25) % 500:.2f},{['EUR', 'USD', 'GBP'][i % 3]},2026-11-{n:02d}\n"
        for i in range(1, 26)
    )


class FtpDemoData:
    """Serves ``outgoing/`` with valid daily files (one gzipped, one in a folder with a
    space in its name), a file with bad values and one with a wrong header."""

    name = "ftp"

    def __init__(self) -> None:
        self._server: object | None = None
        self._thread: threading.Thread | None = None

    def start(self, ctx: DemoContext) -> None:
        # pyftpdlib's in-memory user table (its real name): a working login for the demo.
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import FTPHandler
        from pyftpdlib.ioloop import IOLoop
        from pyftpdlib.servers import FTPServer

        root = self._write_files(ctx.workdir / "ftp-root")
        password = secrets.token_urlsafe(12)
        authorizer = DummyAuthorizer()
        authorizer.add_user("demo", password, str(root), perm="elr")
        handler = type("DemoFtpHandler", (FTPHandler,), {"authorizer": authorizer})
        server = FTPServer(("127.0.0.1", 0), handler, ioloop=IOLoop())
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"timeout": 0.2, "handle_exit": False},
            name="demo-ftp", daemon=True,
        )  # fmt: skip
        self._thread.start()
        ctx.env.update(FTP_HOST="127.0.0.1", FTP_PORT=str(server.address[1]),
                       FTP_USER="demo", FTP_PASSWORD=password)  # fmt: skip

    @staticmethod
    def _write_files(root: Path) -> Path:
        out = root / "outgoing"
        (out / "late files").mkdir(parents=True, exist_ok=True)
        for n in range(1, 5):
            (out / f"sales_2026-11-{n:02d}.csv").write_text(HEADER + _day(n))
        (out / "late files" / "sales_2026-11-05.csv").write_text(HEADER + _day(5))
        (out / "sales_2026-11-06.csv.gz").write_bytes(gzip.compress((HEADER + _day(6)).encode()))
        bad = HEADER + "701,-3.50,EUR,2026-11-07\n702,12.00,BTC,2026-11-07\n702,1,USD,2026-11-31\n"
        (out / "sales_2026-11-07.csv").write_text(bad)
        (out / "sales_2026-11-08.csv").write_text("id;amount\n1;2\n")
        (out / "README.txt").write_text("not matched by the service's include patterns\n")
        return root

    def stop(self) -> None:
        if self._server is not None:
            self._server.close_all()  # type: ignore[attr-defined]
        if self._thread is not None:
            self._thread.join(timeout=5)
