"""Two real ``certserver serve`` processes on one PostgreSQL database, 16 clients at once.

Plain HTTP on loopback (``--insecure-http``): what is under test is the shared store under
concurrency, not TLS (covered where the certificate matters); 16 clients' handshakes would
only add CPU load on a small machine, and two servers sharing one home would otherwise race
to write their self-issued certificate.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from .conftest import (
    POSTGRES_URL,
    _postgres_database,
    certserver_script,
    env_for,
    need,
    run_process,
)

CLIENTS = 16
CALLS = 200
#: Calls of each pair of clients (i, i + 8) that send the same name to both servers at once.
COLLIDING_AT = (3, 9)
PROBLEM = "application/problem+json"


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(env: dict[str, str], log: Path) -> Server:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [certserver_script(), "serve", "--bind", f"127.0.0.1:{port}", "--insecure-http"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(process, f"http://127.0.0.1:{port}", log)


def wait_ready(server: Server, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"certserver serve exited: {server.log.read_text()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"certserver serve did not come up: {server.log.read_text()}")


def stop(server: Server) -> None:
    if server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait(15)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    need(POSTGRES_URL is not None, "CERTSERVER_TEST_POSTGRES_URL is not set")
    assert POSTGRES_URL is not None
    yield from _postgres_database(POSTGRES_URL)


@dataclass(frozen=True)
class Call:
    client: int
    server: int
    name: str


@dataclass(frozen=True)
class Outcome:
    call: Call
    status: int | None
    content_type: str
    code: str | None
    error: str | None = None


def plan() -> list[list[Call]]:
    """Each client's calls, 200 in all. Clients i and i + 8 send the same name at their
    calls 3 and 9, one to each server, at the same moment (a barrier); the rest are
    unique names alternating between the servers."""
    per_client = [CALLS // CLIENTS + (1 if c < CALLS % CLIENTS else 0) for c in range(CLIENTS)]
    assert sum(per_client) == CALLS
    calls: list[list[Call]] = []
    for client, count in enumerate(per_client):
        mine = []
        pair = client % (CLIENTS // 2)
        for index in range(count):
            if index in COLLIDING_AT:
                mine.append(Call(client, client // (CLIENTS // 2), f"clash-{pair}-{index}"))
            else:
                mine.append(Call(client, (client + index) % 2, f"dep-{client}-{index}"))
        calls.append(mine)
    return calls


def body(name: str) -> dict[str, object]:
    return {
        "name": name,
        "organization": "Load Test",
        "hosts": {"all": ["localhost"]},
        "key_type": "ec-p256",
        "validity_days": 30,
        "ca_mode": "certserver",
    }


def run_clients(servers: list[Server], token: str) -> list[Outcome]:
    calls = plan()
    pairs = {pair: threading.Barrier(2, timeout=60) for pair in range(CLIENTS // 2)}
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS, timeout=60)

    def client(mine: list[Call]) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(headers=headers, timeout=60) as http:
            start.wait()
            for index, call in enumerate(mine):
                if index in COLLIDING_AT:
                    pairs[call.client % (CLIENTS // 2)].wait()
                try:
                    response = http.post(
                        f"{servers[call.server].url}/api/v1/deployments", json=body(call.name)
                    )
                except httpx.TransportError as exc:
                    outcome = Outcome(call, None, "", None, f"{type(exc).__name__}: {exc}")
                else:
                    kind = response.headers.get("content-type", "")
                    code = response.json().get("code") if kind.startswith(PROBLEM) else None
                    outcome = Outcome(call, response.status_code, kind, code)
                with lock:
                    outcomes.append(outcome)

    threads = [threading.Thread(target=client, args=(mine,)) for mine in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not any(thread.is_alive() for thread in threads), "a client hung"
    return outcomes


def test_two_servers_on_postgresql_under_16_concurrent_clients(
    tmp_path: Path, postgres_url: str
) -> None:
    env = env_for(tmp_path / "home", CERTSERVER_DATABASE_URL=postgres_url)
    env["CERTSERVER_BUSY_TIMEOUT"] = "5"
    made = run_process(
        certserver_script(), "token", "create", "--role", "sysadmin", "--name", "load", env=env
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    servers = [start_server(env, tmp_path / f"serve-{i}.log") for i in range(2)]
    try:
        for server in servers:
            wait_ready(server)
        outcomes = run_clients(servers, token)
        for server in servers:
            assert server.process.poll() is None, server.log.read_text()
    finally:
        for server in servers:
            stop(server)
    logs = "\n".join(server.log.read_text() for server in servers)

    assert len(outcomes) == CALLS
    broken = [o for o in outcomes if o.status not in (201, 409)]
    assert not broken, f"{broken[:5]}\n{logs[-4000:]}"
    refused = [o for o in outcomes if o.status == 409]
    assert all(o.content_type.startswith(PROBLEM) for o in refused)
    assert all(o.code == "deployment-exists" for o in refused)
    # every name was created exactly once; only the colliding ones were refused, once each
    created = Counter(o.call.name for o in outcomes if o.status == 201)
    names = {o.call.name for o in outcomes}
    assert set(created) == names and set(created.values()) == {1}
    clashes = {o.call.name for o in outcomes if o.call.name.startswith("clash-")}
    assert len(clashes) == len(COLLIDING_AT) * CLIENTS // 2
    assert sorted(o.call.name for o in refused) == sorted(clashes)
    # both servers did real work, collisions included
    assert {o.call.server for o in outcomes if o.status == 201} == {0, 1}

    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT name FROM deployments")).scalars().all()
            assert sorted(rows) == sorted(names)
            for column in ("serial", "fingerprint"):
                twice = connection.execute(
                    sa.text(
                        f"SELECT {column} FROM certificates GROUP BY {column} HAVING count(*) > 1"
                    )
                ).all()
                assert not twice, f"duplicate certificate {column}s: {twice}"
            per_deployment = connection.execute(
                sa.text(
                    "SELECT count(DISTINCT d.id), count(c.id) FROM deployments d "
                    "JOIN certificates c ON c.deployment_id = d.id"
                )
            ).one()
            assert per_deployment == (len(names), 6 * len(names))
            audit = connection.execute(
                sa.text(
                    "SELECT target, result, count(*) FROM audit_log "
                    "WHERE action = 'deployment.create' GROUP BY target, result"
                )
            ).all()
    finally:
        engine.dispose()
    assert sum(count for _, _, count in audit) == CALLS  # one audit row per call
    expected = Counter({(name, "ok"): 1 for name in names})
    expected.update((o.call.name, "deployment-exists") for o in refused)
    assert Counter({(t, r): n for t, r, n in audit}) == expected
    assert "Traceback" not in logs
