"""``certserver sign-csr``: a CSR made on the component's host, signed under policy."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from certserver.identity import Component

from .conftest import Cli, need_tool, run_process
from .openssl_tools import s_client, s_server


@pytest.fixture
def deployment(run: Cli, out_dir: Path) -> tuple[Cli, Path]:
    done = run(
        "deployment",
        "create",
        "signing",
        "--host",
        "all=localhost,127.0.0.1",
        "--out",
        str(out_dir),
    )
    assert done.exit_code == 0
    return run, out_dir


def _csr(tmp_path: Path, name: str, *options: str, key: str = "ec:P-256") -> Path:
    openssl = need_tool("openssl")
    kind, _, size = key.partition(":")
    keygen = (
        ["-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{size}"]
        if kind == "ec"
        else ["-newkey", f"rsa:{size}"]
    )
    done = run_process(
        openssl,
        "req",
        "-new",
        *keygen,
        "-nodes",
        "-keyout",
        str(tmp_path / f"{name}.key"),
        "-subj",
        "/CN=chosen-by-the-host/O=Someone Else",
        *options,
        "-out",
        str(tmp_path / f"{name}.csr"),
    )
    assert done.returncode == 0, done.stderr
    return tmp_path / f"{name}.csr"


def _ccid(out_dir: Path, tmp_path: Path) -> str:
    import zipfile

    with zipfile.ZipFile(out_dir / "signing_certs.zip") as archive:
        archive.extractall(tmp_path / "pkg")
    import json

    return str(json.loads((tmp_path / "pkg" / "manifest.json").read_text())["ccid"])


def test_a_host_made_csr_is_signed_with_the_ca_identity_and_works(
    deployment: tuple[Cli, Path], tmp_path: Path, home: Path
) -> None:
    run, out_dir = deployment
    csr = _csr(tmp_path, "cco", "-addext", "subjectAltName=DNS:localhost,URI:spiffe://x/y")
    cert_path = tmp_path / "cco.crt"
    done = run("sign-csr", "signing", str(csr), "--component", "cco", "--out", str(cert_path))
    assert done.exit_code == 0, done.stderr
    ccid = _ccid(out_dir, tmp_path)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    subject = {a.oid: a.value for a in cert.subject}
    assert (
        subject[NameOID.COMMON_NAME] == "cco" and subject[NameOID.ORGANIZATIONAL_UNIT_NAME] == ccid
    )
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{ccid}/cco"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    openssl = need_tool("openssl")
    pkg = tmp_path / "pkg"
    verified = run_process(
        openssl,
        "verify",
        "-x509_strict",
        "-purpose",
        "sslclient",
        "-CAfile",
        str(pkg / "ccm" / "ca.crt"),
        str(cert_path),
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    with s_server(
        pkg / "ccm" / "mgmtserver.crt",
        pkg / "ccm" / "mgmtserver.key",
        pkg / "ccm" / "ca.crt",
        "tls1_3",
    ) as port:
        accepted = s_client(port, pkg / "cco" / "ca.crt", "tls1_3", cert_path, tmp_path / "cco.key")
    assert accepted.served, accepted.output
    rows = (
        sqlite3.connect(home / "certserver.db")
        .execute("SELECT component, status, key_sealed FROM certificates WHERE status = 'issued'")
        .fetchall()
    )
    assert rows == [("cco", "issued", None)]
    shown = run("deployment", "show", "signing", "--json")
    assert shown.stdout.count('"component": "cco"') == 1  # the package's set is unchanged


@pytest.mark.parametrize(
    ("options", "key", "violation"),
    [
        (["-addext", "basicConstraints=critical,CA:TRUE"], "ec:P-256", "asks to be a CA"),
        (["-addext", "extendedKeyUsage=codeSigning"], "ec:P-256", "asks for other key usages"),
        (
            ["-addext", "subjectAltName=DNS:evil.example.com"],
            "ec:P-256",
            "asks for evil.example.com, not among cco's recorded hosts",
        ),
        (["-addext", "subjectAltName=email:a@b.c"], "ec:P-256", "asks for a RFC822Name"),
        ([], "rsa:1024", "RSA-1024 is too weak"),
        (
            ["-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"],
            "ec:P-256",
            "asks for keyCertSign or cRLSign",
        ),
        (
            ["-addext", "1.2.3.4.5=critical,ASN1:NULL"],
            "ec:P-256",
            "asks for a critical extension certserver does not set (1.2.3.4.5)",
        ),
        (
            ["-addext", "subjectAltName=DNS:127.0.0.1"],
            "ec:P-256",
            "asks for the DNS name 127.0.0.1, which is an IP address",
        ),
        ([], "ec:secp192k1", "uses an algorithm that is not allowed"),
        ([], "ec:secp224r1", "curve secp224r1 is not allowed"),
    ],
)
def test_csrs_outside_policy_are_refused(
    deployment: tuple[Cli, Path], tmp_path: Path, options: list[str], key: str, violation: str
) -> None:
    run, _ = deployment
    csr = _csr(tmp_path, "bad", *options, key=key)
    out = tmp_path / "bad.crt"
    result = run("sign-csr", "signing", str(csr), "--component", "cco", "--out", str(out))
    assert result.exit_code == 1 and violation in result.stderr, result.stderr
    assert result.stderr.startswith(f"certserver: error: {csr}: refused: ")
    assert not out.exists()


def test_every_violation_is_listed_and_a_forged_signature_is_caught(
    deployment: tuple[Cli, Path], tmp_path: Path
) -> None:
    run, _ = deployment
    csr = _csr(
        tmp_path,
        "many",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "subjectAltName=DNS:evil.example.com",
        key="rsa:1024",
    )
    result = run("sign-csr", "signing", str(csr), "--component", "cco")
    assert all(v in result.stderr for v in ("too weak", "asks to be a CA", "evil.example.com"))
    request = x509.load_pem_x509_csr(_csr(tmp_path, "good").read_bytes())
    from cryptography.hazmat.primitives.serialization import Encoding

    der = bytearray(request.public_bytes(Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    forged = tmp_path / "forged.csr"
    forged.write_bytes(bytes(der))
    refused = run("sign-csr", "signing", str(forged), "--component", "cco")
    assert refused.exit_code == 1 and "no proof of possession" in refused.stderr


def test_bad_inputs_name_the_file(deployment: tuple[Cli, Path], tmp_path: Path) -> None:
    run, out_dir = deployment
    not_csr = out_dir / "signing_certs.zip"
    result = run("sign-csr", "signing", str(tmp_path / "missing.csr"), "--component", "cco")
    assert result.stderr == f"certserver: error: {tmp_path / 'missing.csr'}: no such file\n"
    cert_only = tmp_path / "cert.pem"
    import zipfile

    with zipfile.ZipFile(not_csr) as archive:
        cert_only.write_bytes(archive.read("cco/gateway.crt"))
    result = run("sign-csr", "signing", str(cert_only), "--component", "cco")
    assert result.stderr == (
        f"certserver: error: {cert_only}: holds a certificate, expected one CSR\n"
    )
    csr = _csr(tmp_path, "fine")
    result = run("sign-csr", "nobody", str(csr), "--component", "cco")
    assert result.exit_code == 1 and "no deployment named nobody" in result.stderr


def test_the_component_table_is_used_for_every_component(
    deployment: tuple[Cli, Path], tmp_path: Path
) -> None:
    run, _ = deployment
    for component in Component:
        csr = _csr(tmp_path, component.folder)
        result = run("sign-csr", "signing", str(csr), "--component", component.folder)
        assert result.exit_code == 0, result.stderr
        cert = x509.load_pem_x509_certificate(result.stdout.encode())
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert uris.get_values_for_type(x509.UniformResourceIdentifier)[0].endswith(
            f"/{component.folder}"
        )


def test_the_signed_certificate_lives_as_long_as_the_deployments_own(
    run: Cli, out_dir: Path, tmp_path: Path
) -> None:
    done = run("deployment", "create", "short", "--validity-days", "30", "--out", str(out_dir))
    assert done.exit_code == 0
    result = run("sign-csr", "short", str(_csr(tmp_path, "s")), "--component", "ccm")
    assert result.exit_code == 0, result.stderr
    cert = x509.load_pem_x509_certificate(result.stdout.encode())
    import datetime as dt

    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == dt.timedelta(days=30, minutes=5)
