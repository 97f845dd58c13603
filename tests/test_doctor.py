"""``certserver doctor`` finds each planted fault; ``--connect`` shakes hands for real."""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
import shutil
from pathlib import Path

import pytest

from certserver.config import Settings
from certserver.identity import Component, DeploymentName
from certserver.service import CertServer, CreateRequest

from .conftest import Cli, Extracted, env_for, extract, need
from .openssl_tools import s_server

SSL = Path("usr/local/osmosix/ssl")


@pytest.fixture
def installed(run: Cli, alpha: Extracted, tmp_path: Path) -> Path:
    need(os.geteuid() == 0, "owner checks need root")
    prefix = tmp_path / "root"
    done = run(
        "install", str(alpha.result.package_path), "--component", "esb", "--prefix", str(prefix)
    )
    assert done.exit_code == 0, done.stderr
    return prefix


def _doctor(run: Cli, prefix: Path, *extra: str) -> tuple[int, dict[str, tuple[str, str]]]:
    result = run("doctor", "--component", "esb", "--prefix", str(prefix), "--json", *extra)
    rows = json.loads(result.stdout)
    return result.exit_code, {row["check"]: (row["status"], row["message"]) for row in rows}


def test_a_healthy_install_passes_every_check(run: Cli, installed: Path) -> None:
    code, checks = _doctor(run, installed)
    assert code == 0
    assert {status for status, _ in checks.values()} == {"PASS"}
    for check in (
        "esb key",
        "esb chain",
        "esb identity",
        "esb expiry",
        "tomcat link",
        "esb_rabbit folder",
        "esb_rabbit server_key.pem",
        "esb_rabbit identity",
    ):
        assert check in checks
    text = run("doctor", "--component", "esb", "--prefix", str(installed))
    assert text.exit_code == 0 and "PASS esb chain: verifies to ca.crt" in text.stdout


def _fails(run: Cli, prefix: Path, check: str, fragment: str) -> None:
    code, checks = _doctor(run, prefix)
    assert code == 1
    status, message = checks[check]
    assert status == "FAIL" and fragment in message, checks[check]


def test_a_wrong_mode_is_found(run: Cli, installed: Path) -> None:
    (installed / SSL / "esb" / "esb.key").chmod(0o644)
    _fails(run, installed, "esb esb.key", "mode 0644, expected 0600")


def test_a_wrong_owner_is_found(run: Cli, installed: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    os.chown(installed / "etc/rabbitmq/certs/server_key.pem", nobody.pw_uid, nobody.pw_gid)
    _fails(run, installed, "esb_rabbit server_key.pem", "expected rabbitmq:rabbitmq")


def test_a_swapped_key_is_found(run: Cli, installed: Path, alpha: Extracted) -> None:
    key = installed / SSL / "esb" / "esb.key"
    key.write_bytes(alpha.key(Component.GUA).read_bytes())
    _fails(run, installed, "esb key", "esb.key does not match esb.crt")


def test_an_expired_certificate_is_found(run: Cli, installed: Path, tmp_path: Path) -> None:
    settings = Settings.from_env(env_for(tmp_path / "old-home"))
    out = tmp_path / "old"
    out.mkdir()
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=800)
    with CertServer(settings, clock=lambda: long_ago) as service:
        package = service.create_deployment(CreateRequest(DeploymentName("old"), out)).package_path
    old = extract(package, tmp_path / "old-x")
    folder = installed / SSL / "esb"
    for name in ("esb.crt", "esb.key", "ca.crt"):
        shutil.copyfile(old / "esb" / name, folder / name)
    _fails(run, installed, "esb expiry", "expired 70 days ago")
    # the broker's set is of another deployment now: doctor says so too
    _fails(run, installed, "esb_rabbit identity", "expected")


def test_a_broken_link_is_found(run: Cli, installed: Path) -> None:
    link = installed / "usr/local/tomcat/conf/ssl"
    link.unlink()
    link.symlink_to("../../osmosix/ssl/ccm")
    _fails(run, installed, "tomcat link", "points to ../../osmosix/ssl/ccm")
    link.unlink()
    _fails(run, installed, "tomcat link", "is missing")


def test_a_missing_install_is_found(run: Cli, tmp_path: Path) -> None:
    code, checks = _doctor(run, tmp_path / "empty")
    assert code == 1
    assert checks["esb folder"][0] == "FAIL" and "does not exist" in checks["esb folder"][1]


@pytest.mark.parametrize("tls", ["tls1_2", "tls1_3"])
def test_connect_reports_the_peers_verified_identity(
    run: Cli, installed: Path, alpha: Extracted, tls: str
) -> None:
    ccm = Component.CCM
    with s_server(alpha.cert(ccm), alpha.key(ccm), alpha.ca(ccm), tls) as port:
        code, checks = _doctor(run, installed, "--connect", f"127.0.0.1:{port}")
    status, message = checks[f"connect 127.0.0.1:{port}"]
    assert code == 0 and status == "PASS"
    assert f"spiffe://{alpha.result.deployment.ccid}/ccm" in message


def test_connect_refuses_a_server_of_another_deployment(
    run: Cli, installed: Path, bravo: Extracted
) -> None:
    ccm = Component.CCM
    with s_server(bravo.cert(ccm), bravo.key(ccm), bravo.ca(ccm), "tls1_3") as port:
        code, checks = _doctor(run, installed, "--connect", f"127.0.0.1:{port}")
    status, message = checks[f"connect 127.0.0.1:{port}"]
    assert code == 1 and status == "FAIL"
    assert "TLS handshake failed" in message and "CERTIFICATE_VERIFY_FAILED" in message


def test_connect_to_nothing_is_a_failure(run: Cli, installed: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, checks = _doctor(run, installed, "--connect", f"127.0.0.1:{port}")
    assert code == 1 and "cannot connect" in checks[f"connect 127.0.0.1:{port}"][1]
