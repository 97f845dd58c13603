"""``certserver serve`` as a process: HTTPS with its own certificate, client certificates as
credentials, plain HTTP only when asked, and no token in its log."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from .conftest import Cli, certserver_script, env_for, extract, run_process


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(home: Path, *args: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = _free_port()
    process = subprocess.Popen(
        [certserver_script(), "serve", "--bind", f"127.0.0.1:{port}", *args],
        env={**env_for(home), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(process.stdout.read() if process.stdout else "")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield port, process
    finally:
        process.terminate()
        process.wait(15)


def _token(home: Path, role: str) -> str:
    done = run_process(certserver_script(), "token", "create", "--role", role, env=env_for(home))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_https_with_its_own_certificate_and_no_token_in_the_log(tmp_path: Path) -> None:
    home = tmp_path / "home"
    token = _token(home, "sysadmin")
    with serving(home) as (port, process):
        pinned = ssl.create_default_context(cafile=str(home / "serve" / "server.crt"))
        with httpx.Client(verify=pinned, timeout=15) as http:
            base = f"https://127.0.0.1:{port}"
            assert http.get(f"{base}/health").json() == {"status": "ok"}
            created = http.post(
                f"{base}/api/v1/deployments",
                json={"name": "served", "hosts": {"all": ["localhost"]}},
                headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": "203.0.113.66"},
            )
            assert created.status_code == 201, created.text
            refused = http.get(f"{base}/api/v1/deployments", headers={"Authorization": "Bearer x"})
            assert refused.status_code == 401
        with pytest.raises(httpx.ConnectError), httpx.Client(timeout=15) as unpinned:
            unpinned.get(f"https://127.0.0.1:{port}/health")  # not a publicly trusted cert
        process.terminate()
        log = process.communicate(timeout=15)[0]
    assert "POST /api/v1/deployments" in log and "201" in log
    assert token not in log and token.split("_")[-1] not in log
    key = home / "serve" / "server.key"
    assert key.stat().st_mode & 0o777 == 0o600
    audit = run_process(certserver_script(), "audit", "--json", env=env_for(home))
    entries = json.loads(audit.stdout)
    assert entries[0]["action"] == "deployment.create" and entries[0]["source"] == "127.0.0.1"


def test_its_own_certificate_follows_the_bound_address(tmp_path: Path) -> None:
    from certserver.config import Settings
    from certserver.web.server import Bind, own_certificate

    settings = Settings.from_env(env_for(tmp_path / "home"))
    first = own_certificate(settings, Bind("127.0.0.1", 8443))
    assert own_certificate(settings, Bind("127.0.0.1", 9443)) == first  # kept
    other = own_certificate(settings, Bind("127.0.0.2", 8443))
    assert other[2] != first[2]
    cert = x509.load_pem_x509_certificate(other[0].read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.2" in [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    other[1].chmod(0o644)  # a key others can read is not used again
    assert own_certificate(settings, Bind("127.0.0.2", 8443))[2] != other[2]


def test_a_client_certificate_can_be_the_credential(run: Cli, home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert (
        run("deployment", "create", "tools", "--host", "all=localhost", "--out", str(out)).exit_code
        == 0
    )
    x = extract(out / "tools_certs.zip", tmp_path / "x")
    cert, key, ca = x / "cco" / "gateway.crt", x / "cco" / "gateway.key", x / "cco" / "ca.crt"
    added = run("token", "add-cert", "--role", "auditor", "--name", "robot", "--cert", str(cert))
    assert added.exit_code == 0, added.output
    with serving(home, "--client-ca", str(ca)) as (port, _process):
        pinned = ssl.create_default_context(cafile=str(home / "serve" / "server.crt"))
        pinned.load_cert_chain(str(cert), str(key))
        with httpx.Client(verify=pinned, timeout=15) as http:
            answer = http.get(f"https://127.0.0.1:{port}/api/v1/deployments")
            assert answer.status_code == 200 and answer.json()["total"] == 1
            denied = http.post(f"https://127.0.0.1:{port}/api/v1/deployments", json={"name": "x"})
            assert denied.status_code == 403
        other = ssl.create_default_context(cafile=str(home / "serve" / "server.crt"))
        other.load_cert_chain(str(x / "gua" / "gua.crt"), str(x / "gua" / "gua.key"))
        with httpx.Client(verify=other, timeout=15) as http:  # issued by that CA, not registered
            assert http.get(f"https://127.0.0.1:{port}/api/v1/deployments").status_code == 401


def test_plain_http_only_when_asked_and_bad_options_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with serving(home, "--insecure-http") as (port, _process):
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=15).status_code == 200
    env = env_for(home)
    for args, problem in [
        (["--insecure-http", "--tls-cert", "x.pem"], "--insecure-http takes no"),
        (["--tls-cert", str(tmp_path / "x.pem")], "give both --tls-cert and --tls-key"),
        (["--bind", "nowhere"], "invalid --bind 'nowhere'"),
        (
            ["--tls-cert", str(tmp_path / "x.pem"), "--tls-key", str(tmp_path / "y.pem")],
            "cannot load the TLS certificate",
        ),
    ]:
        done = run_process(certserver_script(), "serve", *args, env=env, timeout=30)
        assert done.returncode == 1, done.stdout + done.stderr
        assert problem in done.stderr and "Traceback" not in done.stderr
