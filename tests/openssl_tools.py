"""A real ``openssl s_server`` on loopback, and ``s_client`` runs against it."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .conftest import need_tool, run_process


@dataclass(frozen=True)
class ClientRun:
    returncode: int
    output: str

    @property
    def served(self) -> bool:
        """True when the server answered the HTTP request: the handshake was accepted."""
        return "HTTP/1.0 200 ok" in self.output


@contextlib.contextmanager
def s_server(cert: Path, key: Path, ca: Path, tls: str) -> Iterator[int]:
    """``s_server -Verify 1 -verify_return_error`` (client certificate required) on a free port."""
    openssl = need_tool("openssl")
    process = subprocess.Popen(
        [
            openssl,
            "s_server",
            "-accept",
            "127.0.0.1:0",
            "-naccept",
            "50",
            "-cert",
            str(cert),
            "-key",
            str(key),
            "-CAfile",
            str(ca),
            "-Verify",
            "1",
            "-verify_return_error",
            f"-{tls}",
            "-www",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        port = _accept_port(process)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _accept_port(process: subprocess.Popen[str]) -> int:
    assert process.stdout is not None
    deadline = time.monotonic() + 15
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = re.match(r"ACCEPT .*:(\d+)", line)
        if match:
            return int(match.group(1))
    raise AssertionError(f"s_server did not start: {''.join(seen)}")


def s_client(
    port: int, ca: Path, tls: str, cert: Path | None = None, key: Path | None = None
) -> ClientRun:
    openssl = need_tool("openssl")
    args = [
        openssl,
        "s_client",
        "-connect",
        f"127.0.0.1:{port}",
        "-servername",
        "localhost",
        "-verify_hostname",
        "localhost",
        "-CAfile",
        str(ca),
        "-verify_return_error",
        f"-{tls}",
        "-ign_eof",
    ]
    if cert is not None and key is not None:
        args += ["-cert", str(cert), "-key", str(key)]
    done = run_process(*args, stdin="GET / HTTP/1.0\r\n\r\n", timeout=30)
    return ClientRun(done.returncode, done.stdout + done.stderr)
