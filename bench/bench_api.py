"""Benchmark CSR signing through certserver's API against ``cfssl serve`` on this machine.

What is measured: signed certificates per second at a concurrency of 16 (16 keep-alive
connections, each sending its next request when the previous answer arrived), for

* ``cfssl serve`` (Debian's golang-cfssl; ``POST /api/v1/cfssl/sign`` with
  ``{"certificate_request": PEM}``; a CA made with ``cfssl gencert -initca``, the same key
  type as the deployment's CA; it keeps no record of what it signed, as it runs without
  ``-db-config``);
* ``certserver serve`` with its store on SQLite (the default, in a temporary home);
* ``certserver serve`` with its store on PostgreSQL (a fresh database, dropped after).

certserver signs with ``POST /api/v1/deployments/bench/sign?component=cco`` (a multipart
``csr`` field, a bearer token): it authenticates the token, checks the CSR against policy,
signs under the deployment's CA, records the certificate, and writes an audit entry.
Both servers get the same CSRs (a pool of P-256 or RSA-2048 keys, SAN ``localhost``),
plain HTTP on loopback (``certserver serve --insecure-http``: cfssl serve speaks plain
HTTP too, and with keep-alive the TLS handshake would not count anyway).

Pinning: every server process runs under ``taskset -c 0``; this script (the clients: one
asyncio loop writing pre-built requests, which costs far less than either server) pins
itself to core 1. PostgreSQL is the machine's own service and is not pinned: its backends
run where the kernel puts them (so certserver on PostgreSQL gets some CPU beyond core 0).

Rounds are interleaved (cfssl, certserver-sqlite, certserver-postgresql, again...), each
after a warm-up; the figure is the median over rounds, the ratio the median of the
per-round ratios certserver / cfssl. Every answer is checked (status 200 and a
certificate); the first of each server is parsed and checked to carry the CSR's key.
Nothing is asserted about speed: the script prints a table and exits 0.

Run it from the project root::

    .venv/bin/python bench/bench_api.py            # full run, one to two minutes
    .venv/bin/python bench/bench_api.py --quick    # about 7 s (a smoke run)
    .venv/bin/python bench/bench_api.py --key-type rsa-2048

``--postgres-url`` (default ``$CERTSERVER_TEST_POSTGRES_URL``, else the local
``postgresql+psycopg://postgres@127.0.0.1:5432/test``) names the server to make the
database on; ``--no-postgres`` leaves it out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
SERVER_CPU = "0"
CLIENT_CPU = 1
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEPLOYMENT = "bench"
BOUNDARY = "certserver-bench-boundary"


@dataclass(frozen=True)
class Size:
    requests: int  # per round
    warmup: int
    rounds: int
    pool: int  # distinct CSRs, cycled


FULL = Size(requests=1000, warmup=100, rounds=3, pool=64)
QUICK = Size(requests=48, warmup=16, rounds=1, pool=8)


# -- the CSRs -------------------------------------------------------------------------------


def make_csrs(key_type: str, count: int) -> list[bytes]:
    csrs = []
    for index in range(count):
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
        if key_type == "rsa-2048":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench-{index}")]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256())
        )
        csrs.append(csr.public_bytes(Encoding.PEM))
    return csrs


def public_key_der(pem: bytes, *, csr: bool) -> bytes:
    loaded = x509.load_pem_x509_csr(pem) if csr else x509.load_pem_x509_certificate(pem)
    return loaded.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


# -- HTTP/1.1 on raw keep-alive connections ---------------------------------------------------


def http_request(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return status, b"".join(chunks)
            chunks.append(chunk[:-2])
    raise RuntimeError(f"a response without a length: {head!r}")


@dataclass
class Target:
    label: str
    port: int
    requests: list[bytes]  # one per CSR of the pool
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    rates: list[float] = field(default_factory=list)
    #: the server process's CPU seconds per request, per round
    cpu: list[float] = field(default_factory=list)

    def certificate(self, body: bytes) -> bytes:
        if self.label == "cfssl":
            answer = json.loads(body)
            if not answer.get("success"):
                raise RuntimeError(f"cfssl refused: {answer.get('errors')}")
            return str(answer["result"]["certificate"]).encode()
        return body


async def load(target: Target, count: int) -> tuple[float, bytes]:
    """``count`` requests over CONCURRENCY connections; the seconds taken, and one answer."""
    sent = 0
    first: list[bytes] = []

    async def connection() -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
        try:
            while sent < count:
                index = sent
                sent += 1
                writer.write(target.requests[index % len(target.requests)])
                status, body = await read_response(reader)
                if status != 200:
                    raise RuntimeError(f"{target.label}: HTTP {status}: {body[:300]!r}")
                cert = target.certificate(body)
                if not cert.startswith(b"-----BEGIN CERTIFICATE-----"):
                    raise RuntimeError(f"{target.label}: not a certificate: {body[:200]!r}")
                if index == 0:
                    first.append(cert)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(CONCURRENCY)))
    return time.perf_counter() - start, first[0] if first else b""


# -- the servers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(*args: str) -> list[str]:
    return [shutil.which("taskset") or "taskset", "-c", SERVER_CPU, *args]


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            args,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for_port(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server did not start:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(15)


def run_checked(
    args: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> str:
    done = subprocess.run(
        list(args),
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr}")
    return done.stdout


def cfssl_target(work: Path, key_type: str, csrs: list[bytes]) -> Target:
    cfssl = shutil.which("cfssl")
    if cfssl is None:
        raise RuntimeError("cfssl is not installed (apt-get install golang-cfssl)")
    algo = (
        {"algo": "rsa", "size": 2048} if key_type == "rsa-2048" else {"algo": "ecdsa", "size": 256}
    )
    folder = work / "cfssl"
    folder.mkdir()
    (folder / "ca-csr.json").write_text(
        json.dumps({"CN": "bench CA", "key": algo, "names": [{"O": "certserver bench"}]})
    )
    made = json.loads(run_checked([cfssl, "gencert", "-initca", "ca-csr.json"], cwd=folder))
    (folder / "ca.pem").write_text(made["cert"])
    (folder / "ca-key.pem").write_text(made["key"])
    (folder / "config.json").write_text(
        json.dumps(
            {
                "signing": {
                    "default": {
                        "expiry": "8760h",
                        "usages": ["digital signature", "server auth", "client auth"],
                    }
                }
            }
        )
    )
    port = free_port()
    log = folder / "serve.log"
    process = start(
        pinned(
            cfssl,
            "serve",
            "-address",
            "127.0.0.1",
            "-port",
            str(port),
            "-ca",
            str(folder / "ca.pem"),
            "-ca-key",
            str(folder / "ca-key.pem"),
            "-config",
            str(folder / "config.json"),
        ),
        {},
        log,
    )
    wait_for_port(process, port, log)
    requests = [
        http_request(
            "POST",
            "/api/v1/cfssl/sign",
            {"Content-Type": "application/json"},
            json.dumps({"certificate_request": csr.decode()}).encode(),
        )
        for csr in csrs
    ]
    return Target("cfssl", port, requests, process, log)


def certserver_script() -> str:
    script = Path(sys.executable).with_name("certserver")
    if not script.exists():
        raise RuntimeError("certserver is not installed next to this interpreter")
    return str(script)


def certserver_target(
    label: str, home: Path, database_url: str | None, key_type: str, csrs: list[bytes]
) -> Target:
    home.parent.mkdir(exist_ok=True)
    env = {"CERTSERVER_HOME": str(home)}
    if database_url:
        env["CERTSERVER_DATABASE_URL"] = database_url
    script = certserver_script()
    token = run_checked(
        [script, "token", "create", "--role", "sysadmin", "--name", "bench"], env
    ).strip()
    port = free_port()
    log = home.parent / f"{label}.log"
    process = start(
        pinned(script, "serve", "--bind", f"127.0.0.1:{port}", "--insecure-http"), env, log
    )
    wait_for_port(process, port, log)
    auth = {"Authorization": f"Bearer {token}"}
    create = json.dumps(
        {
            "name": DEPLOYMENT,
            "hosts": {"all": ["localhost"]},
            "key_type": key_type,
            "ca_mode": "certserver",
        }
    ).encode()
    created = asyncio.run(
        one(
            port,
            http_request(
                "POST", "/api/v1/deployments", {**auth, "Content-Type": "application/json"}, create
            ),
        )
    )
    if created[0] != 201:
        raise RuntimeError(f"{label}: creating the deployment failed: {created}")
    requests = []
    for csr in csrs:
        body = (
            (
                f"--{BOUNDARY}\r\n"
                'Content-Disposition: form-data; name="csr"; filename="cco.csr"\r\n'
                "Content-Type: application/pkcs10\r\n\r\n"
            ).encode()
            + csr
            + f"\r\n--{BOUNDARY}--\r\n".encode()
        )
        headers = {**auth, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        requests.append(
            http_request(
                "POST", f"/api/v1/deployments/{DEPLOYMENT}/sign?component=cco", headers, body
            )
        )
    return Target(label, port, requests, process, log)


async def one(port: int, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await read_response(reader)
    finally:
        writer.close()


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    import sqlalchemy as sa

    name = f"certserver_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def postgres_reachable(admin_url: str) -> bool:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(admin_url, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception:  # any failure means: leave PostgreSQL out
        return False
    return True


# -- the run ------------------------------------------------------------------------------------


def cpu_seconds(process: subprocess.Popen[bytes] | None) -> float:
    """User and system CPU time of a running process, all its threads (Linux /proc)."""
    if process is None:
        return 0.0
    fields = Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(targets: list[Target], size: Size, csrs: list[bytes]) -> None:
    expected_keys = {public_key_der(csr, csr=True) for csr in csrs}
    for target in targets:  # warm-up, and one answer checked in depth
        _, cert = asyncio.run(load(target, size.warmup))
        if public_key_der(cert, csr=False) not in expected_keys:
            raise RuntimeError(f"{target.label}: the certificate is not for the CSR's key")
    for _ in range(size.rounds):
        for target in targets:
            before = cpu_seconds(target.process)
            seconds, _ = asyncio.run(load(target, size.requests))
            target.cpu.append((cpu_seconds(target.process) - before) / size.requests)
            target.rates.append(size.requests / seconds)


def report(targets: list[Target], size: Size, key_type: str) -> None:
    cfssl = targets[0]
    print(
        f"CSR signing through the API, {key_type} CSRs and CA, concurrency {CONCURRENCY}, "
        f"{size.rounds} round(s) x {size.requests} requests (+{size.warmup} warm-up) per server; "
        f"servers on CPU {SERVER_CPU}, clients on CPU {CLIENT_CPU}"
    )
    print(
        f"{'server':<24}{'median req/s':>14}{'min':>10}{'max':>10}{'vs cfssl':>10}"
        f"{'server CPU ms/req':>20}"
    )
    for target in targets:
        ratio = ""
        if target is not cfssl:
            ratios = [mine / theirs for mine, theirs in zip(target.rates, cfssl.rates, strict=True)]
            ratio = f"{statistics.median(ratios):.2f}x"
        print(
            f"{target.label:<24}{statistics.median(target.rates):>14.0f}"
            f"{min(target.rates):>10.0f}{max(target.rates):>10.0f}{ratio:>10}"
            f"{statistics.median(target.cpu) * 1000:>20.2f}"
        )
    print("target: certserver >= 1.00x cfssl serve")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few requests, one round")
    parser.add_argument("--requests", type=int, help="requests per round and server")
    parser.add_argument("--rounds", type=int, help="rounds per server")
    parser.add_argument("--key-type", choices=["ec-p256", "rsa-2048"], default="ec-p256")
    parser.add_argument("--postgres-url", default=os.environ.get("CERTSERVER_TEST_POSTGRES_URL"))
    parser.add_argument("--no-postgres", action="store_true", help="SQLite and cfssl only")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    size = Size(args.requests or size.requests, size.warmup, args.rounds or size.rounds, size.pool)
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {CLIENT_CPU})
    admin_url = args.postgres_url or DEFAULT_POSTGRES
    use_postgres = not args.no_postgres and postgres_reachable(admin_url)
    if not args.no_postgres and not use_postgres:
        print(f"PostgreSQL at {admin_url} is not reachable: left out", file=sys.stderr)
    csrs = make_csrs(args.key_type, size.pool)
    work = Path(tempfile.mkdtemp(prefix="certserver-bench-api-"))
    targets: list[Target] = []
    try:
        with contextlib.ExitStack() as stack:
            targets.append(cfssl_target(work, args.key_type, csrs))
            targets.append(
                certserver_target(
                    "certserver-sqlite", work / "sqlite" / "home", None, args.key_type, csrs
                )
            )
            if use_postgres:
                url = stack.enter_context(postgres_database(admin_url))
                targets.append(
                    certserver_target(
                        "certserver-postgresql",
                        work / "postgresql" / "home",
                        url,
                        args.key_type,
                        csrs,
                    )
                )
            try:
                measure(targets, size, csrs)
            finally:
                for target in targets:
                    stop(target.process)
        report(targets, size, args.key_type)
    finally:
        for target in targets:
            stop(target.process)
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
