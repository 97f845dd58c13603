"""Expiry status, revocation and the CRL: openssl refuses the revoked certificate, and so
does the mutual TLS check in a real handshake."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509

from certserver.authority import CertificateAuthority
from certserver.errors import PeerRefused, RefusalReason
from certserver.identity import Ccid, Component, DeploymentName
from certserver.keys import KeySpec
from certserver.mtls import ComponentCredentials
from certserver.profiles import DEFAULT_ORGANIZATION
from certserver.revocation import Reason, Revoked, build_crl

from .conftest import Cli, extract, need_tool, run_process
from .test_access import call

CCM, CCO = Component.CCM, Component.CCO


@pytest.fixture
def made(run: Cli, out_dir: Path, tmp_path: Path) -> Path:
    done = run(
        "deployment", "create", "kept", "--host", "all=localhost,127.0.0.1", "--out", str(out_dir)
    )
    assert done.exit_code == 0, done.output
    return extract(out_dir / "kept_certs.zip", tmp_path / "x")


def test_status_exit_codes(run: Cli, made: Path) -> None:
    quiet = run("status")
    assert quiet.exit_code == 0, quiet.output
    assert "Nothing expires within 30d (7 certificates)." in quiet.output
    due = run("status", "kept", "--within", "800d")
    assert due.exit_code == 3
    assert "6 of 7 certificates expire within 800d" in due.output
    shown = json.loads(run("status", "--json", "--within", "800d").output)
    assert len(shown["certificates"]) == 7 and len(shown["expiring"]) == 6
    bad = run("status", "--within", "soon")
    assert bad.exit_code == 1 and "invalid duration 'soon'" in bad.output


def test_status_of_a_broken_store_is_an_error(run: Cli, made: Path, home: Path) -> None:
    (home / "certserver.db").write_bytes(b"this is not a database" * 100)
    broken = run("status")
    assert broken.exit_code == 1
    assert "store is corrupt" in broken.output


def test_a_revoked_certificate_is_refused_by_openssl_and_by_mtls(
    run: Cli, made: Path, tmp_path: Path
) -> None:
    done = run("revoke", "kept", "--component", "cco", "--reason", "key-compromise")
    assert done.exit_code == 0, done.output
    assert "CRL #1" in done.output
    assert run("crl", "kept", "--out", str(tmp_path)).exit_code == 0
    crl = x509.load_der_x509_crl((tmp_path / "kept.crl").read_bytes())
    cco_cert = x509.load_pem_x509_certificate((made / "cco" / "gateway.crt").read_bytes())
    entry = crl.get_revoked_certificate_by_serial_number(cco_cert.serial_number)
    assert entry is not None
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        is x509.ReasonFlags.key_compromise
    )
    bundle = tmp_path / "ca-and-crl.pem"
    bundle.write_bytes(
        (made / "cco" / "ca.crt").read_bytes() + (tmp_path / "kept.crl.pem").read_bytes()
    )
    openssl = need_tool("openssl")
    refused = run_process(
        openssl, "verify", "-crl_check", "-CAfile", str(bundle), str(made / "cco" / "gateway.crt")
    )
    assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr
    accepted = run_process(
        openssl, "verify", "-crl_check", "-CAfile", str(bundle), str(made / "gua" / "gua.crt")
    )
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    server = ComponentCredentials.from_folder(made / "ccm", crl_file=tmp_path / "kept.crl.pem")
    outcome = call(server, ComponentCredentials.from_folder(made / "cco"), server.peer_check())
    assert isinstance(outcome, PeerRefused) and outcome.reason is RefusalReason.REVOKED
    gua = call(server, ComponentCredentials.from_folder(made / "gua"), server.peer_check())
    assert not isinstance(gua, PeerRefused)
    # the status shows it missing (an alert: exit 3); revoking it again is refused
    missing = run("status", "kept")
    assert missing.exit_code == 3 and "cco (none)" in missing.output and "MISSING" in missing.output
    again = run("revoke", "kept", "--component", "cco")
    assert (
        again.exit_code == 1 and "cco of deployment kept has no current certificate" in again.output
    )
    by_serial = run("revoke", "kept", "--serial", format(cco_cert.serial_number, "X"))
    assert by_serial.exit_code == 1 and "already revoked" in by_serial.output


def test_revoke_by_serial_and_crl_numbers_rise(run: Cli, made: Path, tmp_path: Path) -> None:
    serial = x509.load_pem_x509_certificate(
        (made / "mon" / "monitor.crt").read_bytes()
    ).serial_number
    spelled = ":".join(f"{byte:02X}" for byte in serial.to_bytes(20, "big"))  # openssl's way
    first = run("revoke", "kept", "--serial", spelled)
    assert first.exit_code == 0, first.output
    second = run("revoke", "kept", "--component", "gua")
    assert "CRL #2" in second.output
    assert run("crl", "kept", "--out", str(tmp_path)).exit_code == 0
    crl = x509.load_der_x509_crl((tmp_path / "kept.crl").read_bytes())
    assert len(crl) == 2
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--serial", "abc123"], "has no certificate with serial abc123"),
        (["--serial", "xyz"], "invalid serial 'xyz'"),
        ([], "name the certificate by --component or by --serial"),
        (
            ["--component", "cco", "--serial", "1"],
            "name the certificate by --component or by --serial",
        ),
        (["--component", "nobody"], "unknown component 'nobody'"),
    ],
)
def test_bad_revocations_are_refused(run: Cli, made: Path, args: list[str], problem: str) -> None:
    done = run("revoke", "kept", *args)
    assert done.exit_code != 0
    assert problem in done.output


def test_an_enterprise_signed_deployment_is_revoked_at_its_ca(run: Cli, out_dir: Path) -> None:
    assert (
        run(
            "deployment", "create", "corp", "--ca", "enterprise-leaf", "--out", str(out_dir)
        ).exit_code
        == 0
    )
    done = run("revoke", "corp", "--component", "cco")
    assert done.exit_code == 1 and "certserver holds no CA key" in done.output


def test_the_one_pass_crl_equals_what_cryptography_builds() -> None:
    """The hand-encoded entry list says what cryptography's builder would say."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ca = CertificateAuthority.create(
        DeploymentName("x"), Ccid.generate(), DEFAULT_ORGANIZATION, KeySpec.EC_P256, now
    )
    items = [
        Revoked(1, now, Reason.UNSPECIFIED),
        Revoked(2**159 - 1, now - dt.timedelta(days=400), Reason.KEY_COMPROMISE),
        Revoked(0x80, dt.datetime(2051, 1, 1, tzinfo=dt.UTC), Reason.PRIVILEGE_WITHDRAWN),
    ]
    crl = build_crl(ca, items, 5, now)
    assert crl.is_signature_valid(ca.key.public_key())
    assert [(r.serial_number, r.revocation_date_utc) for r in crl] == [
        (i.serial, i.revoked_at) for i in items
    ]
    reasons = [
        next((e.value.reason for e in r.extensions if isinstance(e.value, x509.CRLReason)), None)
        for r in crl
    ]
    assert reasons == [None, x509.ReasonFlags.key_compromise, x509.ReasonFlags.privilege_withdrawn]
    empty = build_crl(ca, [], 1, now)
    assert len(empty) == 0 and empty.is_signature_valid(ca.key.public_key())


def _cert(folder: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((folder / name).read_bytes())


def test_renewal_keeps_the_identity_and_installs(run: Cli, made: Path, tmp_path: Path) -> None:
    from certserver.mtls import identity_of

    out = tmp_path / "renewed"
    out.mkdir()
    prefix = tmp_path / "host"
    first = run(
        "install",
        str(tmp_path / "out" / "kept_certs.zip"),
        "--component",
        "cco",
        "--prefix",
        str(prefix),
    )
    assert first.exit_code == 0, first.output
    done = run("renew", "kept", "--component", "cco", "--out", str(out))
    assert done.exit_code == 0, done.output
    assert "package version 2" in done.output
    renewed = extract(out / "kept_certs.zip", tmp_path / "r")
    old, new = _cert(made / "cco", "gateway.crt"), _cert(renewed / "cco", "gateway.crt")
    assert identity_of(new) == identity_of(old) and new.serial_number != old.serial_number
    assert new.public_key() == old.public_key()  # same key without --rekey
    assert _cert(renewed / "ccm", "mgmtserver.crt") == _cert(made / "ccm", "mgmtserver.crt")
    assert json.loads((renewed / "manifest.json").read_text())["package_version"] == 2
    again = run(
        "install", str(out / "kept_certs.zip"), "--component", "cco", "--prefix", str(prefix)
    )
    assert again.exit_code == 0, again.output
    installed = prefix / "usr/local/osmosix/ssl/cco/gateway.crt"
    assert x509.load_pem_x509_certificate(installed.read_bytes()) == new
    # the store says the same: export gives the renewed package, byte for byte
    exported = tmp_path / "exported"
    exported.mkdir()
    assert run("deployment", "export", "kept", "--out", str(exported)).exit_code == 0
    assert (exported / "kept_certs.zip").read_bytes() == (out / "kept_certs.zip").read_bytes()


def test_a_revoked_component_comes_back_only_with_a_new_key(
    run: Cli, made: Path, tmp_path: Path
) -> None:
    assert run("revoke", "kept", "--component", "gua", "--reason", "key-compromise").exit_code == 0
    refused = run("renew", "kept", "--component", "gua", "--out", str(tmp_path))
    assert refused.exit_code == 1 and "renew it with --rekey" in refused.output
    others = tmp_path / "others"
    others.mkdir()
    everything = run("renew", "kept", "--out", str(others))
    assert everything.exit_code == 0 and "not renewed, no current certificate" in everything.output
    assert "no current certificate (revoked?): gua" in everything.output
    done = run("renew", "kept", "--component", "gua", "--rekey", "--out", str(tmp_path))
    assert done.exit_code == 0, done.output
    renewed = extract(tmp_path / "kept_certs.zip", tmp_path / "r")
    old, new = _cert(made / "gua", "gua.crt"), _cert(renewed / "gua", "gua.crt")
    assert new.public_key() != old.public_key()
    server = ComponentCredentials.from_folder(renewed / "ccm")
    assert not isinstance(
        call(server, ComponentCredentials.from_folder(renewed / "gua"), server.peer_check()),
        PeerRefused,
    )


def test_a_ca_rotation_without_an_outage(run: Cli, made: Path, tmp_path: Path) -> None:
    def package(step: str, *args: str) -> Path:
        out = tmp_path / f"out-{step}"
        out.mkdir()
        done = run(*args, "--out", str(out))
        assert done.exit_code == 0, done.output
        return extract(out / "kept_certs.zip", tmp_path / step)

    def creds(folder: Path, component: Component) -> ComponentCredentials:
        return ComponentCredentials.from_folder(folder / component.folder)

    rotating = package("rotating", "ca", "rotate", "kept")
    assert len(x509.load_pem_x509_certificates((rotating / "ccm" / "ca.crt").read_bytes())) == 2
    # the components' certificates stay: the rotating package only adds trust
    assert _cert(rotating / "cco", "gateway.crt") == _cert(made / "cco", "gateway.crt")
    mixed = package("mixed", "renew", "kept", "--component", "cco")
    new_cco, old_ccm = creds(mixed, CCO), creds(mixed, CCM)
    assert (
        _cert(mixed / "cco", "gateway.crt").issuer == _cert(mixed / "ccm", "mgmtserver.crt").issuer
    )
    assert new_cco.issuer_key_id != old_ccm.issuer_key_id  # the new CA issued it
    # an old-set and a new-set component talk, both ways
    assert not isinstance(call(old_ccm, new_cco, old_ccm.peer_check()), PeerRefused)
    assert not isinstance(call(new_cco, old_ccm, new_cco.peer_check(allowed={CCM})), PeerRefused)
    early = run("ca", "finish-rotation", "kept", "--out", str(tmp_path))
    assert early.exit_code == 1 and "renew them first" in early.output
    renewed = package("renewed", "renew", "kept")
    final = package("final", "ca", "finish-rotation", "kept")
    anchors = x509.load_pem_x509_certificates((final / "ccm" / "ca.crt").read_bytes())
    assert len(anchors) == 1
    server = creds(final, CCM)
    assert not isinstance(call(server, creds(renewed, CCO), server.peer_check()), PeerRefused)
    stale = creds(made, CCO)  # the old set, even when it trusts the new CA, is refused now
    stale = ComponentCredentials(
        stale.identity, stale.cert_file, stale.key_file, server.ca_file, None
    )
    old = call(server, stale, server.peer_check())
    assert isinstance(old, PeerRefused) and old.reason is RefusalReason.UNKNOWN_CA
    again = run("ca", "finish-rotation", "kept", "--out", str(tmp_path))
    assert again.exit_code == 1 and "not rotating" in again.output


def test_revocation_during_a_rotation_covers_both_cas(run: Cli, made: Path, tmp_path: Path) -> None:
    assert run("revoke", "kept", "--component", "mon").exit_code == 0  # CRL #1, old CA
    rotated = tmp_path / "rotated"
    rotated.mkdir()
    assert run("ca", "rotate", "kept", "--out", str(rotated)).exit_code == 0
    done = run("revoke", "kept", "--component", "gua", "--reason", "key-compromise")
    assert done.exit_code == 0, done.output  # gua's certificate is still the old CA's
    assert "CRL #2" in done.output
    assert run("crl", "kept", "--out", str(tmp_path)).exit_code == 0
    pem = (tmp_path / "kept.crl.pem").read_bytes()
    blocks = [
        b"-----BEGIN X509 CRL-----" + part for part in pem.split(b"-----BEGIN X509 CRL-----")[1:]
    ]
    current = [x509.load_pem_x509_crl(block) for block in blocks]
    assert len(current) == 2  # the new CA's and the old one's
    numbers = sorted(
        c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number for c in current
    )
    assert numbers[0] >= 2 and numbers[0] < numbers[1]  # one sequence across the rotation
    old_ca = x509.load_pem_x509_certificate((made / "ccm" / "ca.crt").read_bytes())
    old_crl = next(c for c in current if c.is_signature_valid(old_ca.public_key()))
    gua = _cert(made / "gua", "gua.crt")
    assert old_crl.get_revoked_certificate_by_serial_number(gua.serial_number) is not None
    # a component on the old set that checks the CRLs keeps working, and refuses gua
    bundle = tmp_path / "both.pem"
    bundle.write_bytes((tmp_path / "kept.crl.pem").read_bytes())
    server = ComponentCredentials.from_folder(made / "ccm", crl_file=bundle)
    assert not isinstance(
        call(server, ComponentCredentials.from_folder(made / "cco"), server.peer_check()),
        PeerRefused,
    )
    refused = call(server, ComponentCredentials.from_folder(made / "gua"), server.peer_check())
    assert isinstance(refused, PeerRefused) and refused.reason is RefusalReason.REVOKED
