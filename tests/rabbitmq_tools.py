"""A private RabbitMQ node on loopback, TLS only, run as user rabbitmq (DESIGN.md §6)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .conftest import need, need_tool

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
USER, PASSWORD = "certserver-test", secrets.token_urlsafe(12)


@dataclass(frozen=True)
class Broker:
    port: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def mark(self) -> int:
        """Where the log ends now: :meth:`logged` looks only past it."""
        return len(self.log_text())

    def logged(self, fragment: str, since: int = 0, timeout: float = 15) -> bool:
        """True once ``fragment`` is in the node's log after ``since`` (it writes late)."""
        deadline = time.monotonic() + timeout
        while fragment not in self.log_text()[since:]:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _definitions() -> dict[str, object]:
    salt = os.urandom(4)
    digest = base64.b64encode(salt + hashlib.sha256(salt + PASSWORD.encode()).digest()).decode()
    return {
        "users": [
            {
                "name": USER,
                "password_hash": digest,
                "tags": ["administrator"],
                "hashing_algorithm": "rabbit_password_hashing_sha256",
            }
        ],
        "vhosts": [{"name": "/"}],
        "permissions": [
            {"user": USER, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
        ],
    }


@contextlib.contextmanager
def private_broker(certs: Path, timeout: float = 120) -> Iterator[Broker]:
    """A node whose ``ssl_options`` point at the three files in ``certs``, used in place."""
    need(os.geteuid() == 0, "the broker runs as user rabbitmq: needs root")
    need(RABBITMQ_SERVER.exists(), "rabbitmq-server is not installed")
    setpriv, epmd = need_tool("setpriv"), need_tool("epmd")
    user = pwd.getpwnam("rabbitmq")
    work = Path(tempfile.mkdtemp(prefix="certserver-rabbitmq-"))
    for sub in ("home", "mnesia", "log"):
        (work / sub).mkdir()
    amqps, dist, epmd_port = _free_ports(3)
    node = f"certserver{os.getpid()}@localhost"
    (work / "home" / ".erlang.cookie").write_text(secrets.token_hex(10).upper())
    (work / "home" / ".erlang.cookie").chmod(0o400)
    (work / "definitions.json").write_text(json.dumps(_definitions()))
    (work / "enabled_plugins").write_text("[].\n")
    (work / "rabbitmq-env.conf").write_text("")
    (work / "advanced.config").write_text("[].\n")
    (work / "rabbitmq.conf").write_text(
        "\n".join(
            [
                "listeners.tcp = none",
                f"listeners.ssl.default = 127.0.0.1:{amqps}",
                f"ssl_options.cacertfile = {certs / 'ca_certificate.pem'}",
                f"ssl_options.certfile = {certs / 'server_certificate.pem'}",
                f"ssl_options.keyfile = {certs / 'server_key.pem'}",
                "ssl_options.verify = verify_peer",
                "ssl_options.fail_if_no_peer_cert = true",
                f"load_definitions = {work / 'definitions.json'}",
                "log.console = false",
                "log.file.level = info",
                "",
            ]
        )
    )
    for path in [work, *work.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    work.chmod(0o700)
    as_rabbitmq = [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"]
    epmd_process = subprocess.Popen(
        [
            *as_rabbitmq,
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            epmd,
            "-address",
            "127.0.0.1",
            "-port",
            str(epmd_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": str(work / "home"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "ERL_CRASH_DUMP": str(work / "log" / "erl_crash.dump"),
        "ERL_CRASH_DUMP_SECONDS": "0",
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_CONFIG_FILE": str(work / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(work / "advanced.config"),
        "RABBITMQ_CONF_ENV_FILE": str(work / "rabbitmq-env.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(work / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(work / "mnesia"),
        "RABBITMQ_LOG_BASE": str(work / "log"),
        "RABBITMQ_PID_FILE": str(work / "node.pid"),
        "RABBITMQ_DIST_PORT": str(dist),
        "ERL_EPMD_PORT": str(epmd_port),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }
    console = (work / "log" / "console.log").open("wb")
    node_process = subprocess.Popen(
        [*as_rabbitmq, str(RABBITMQ_SERVER)],
        env=env,
        cwd=work,
        stdout=console,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log = work / "log" / f"{node}.log"
    try:
        deadline = time.monotonic() + timeout
        while True:
            text = log.read_text(errors="replace") if log.exists() else ""
            console_text = (work / "log" / "console.log").read_text(errors="replace")
            if "Server startup complete" in text + console_text:
                break
            if node_process.poll() is not None or "BOOT FAILED" in console_text:
                raise AssertionError(f"RabbitMQ did not start:\n{console_text[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"RabbitMQ did not start in {timeout}s:\n{text[-3000:]}")
            time.sleep(0.25)
        yield Broker(amqps, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node_process.pid, signal.SIGTERM)
        try:
            node_process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node_process.pid, signal.SIGKILL)
            node_process.wait()
        epmd_process.terminate()
        epmd_process.wait(timeout=10)
        console.close()
        shutil.rmtree(work, ignore_errors=True)
