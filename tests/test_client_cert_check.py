"""``certserver client-cert check``: one report, a line per problem; every FAIL its own input."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from certserver.pem import certificate_pem, certificates_pem

from .conftest import Cli, run_openssl
from .webcert_tools import DAY, NOW, Issued, TwoLevel, ca, der, leaf, rsa_key, scrambled_bundle
from .webcert_tools import two_level as make_two_level


@pytest.fixture(scope="module")
def pki() -> TwoLevel:
    return make_two_level()


def _lines(output: str, status: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(status + " ")]


def _check(run: Cli, tmp_path: Path, issued: Issued, *extra: str, bundle: bytes | None = None):  # type: ignore[no-untyped-def]
    cert, key = issued.write(tmp_path, "server")
    args = ["client-cert", "check", "--cert", str(cert), "--key", str(key), *extra]
    if bundle is not None:
        (tmp_path / "bundle.crt").write_bytes(bundle)
        args += ["--ca-bundle", str(tmp_path / "bundle.crt")]
    return run(*args)


def test_a_good_chain_given_scrambled_and_duplicated_passes_and_says_it_reordered(
    run: Cli, tmp_path: Path, pki: TwoLevel
) -> None:
    result = _check(run, tmp_path, pki.leaf, "--host", "localhost", bundle=scrambled_bundle(pki))
    assert result.exit_code == 0, result.output
    assert not _lines(result.output, "FAIL")
    chain = next(line for line in _lines(result.output, "PASS") if line.startswith("PASS chain"))
    assert "CN=localhost -> CN=certserver test intermediate -> CN=certserver test root" in chain
    warnings = "\n".join(_lines(result.output, "WARN"))
    assert "out of order" in warnings
    assert "dropped 2 duplicate" in warnings


def test_the_same_chain_without_its_intermediate_fails(
    run: Cli, tmp_path: Path, pki: TwoLevel
) -> None:
    result = _check(run, tmp_path, pki.leaf, bundle=certificate_pem(pki.root.cert))
    assert result.exit_code == 1
    fails = _lines(result.output, "FAIL")
    assert len(fails) == 1
    assert "FAIL chain: incomplete: no certificate for CN=certserver test intermediate" in fails[0]


def test_a_bundle_without_its_root_warns_that_browsers_must_trust_the_root(
    run: Cli, tmp_path: Path, pki: TwoLevel
) -> None:
    result = _check(run, tmp_path, pki.leaf, bundle=certificate_pem(pki.intermediate.cert))
    assert result.exit_code == 0, result.output
    assert _lines(result.output, "WARN") == [
        "WARN chain: ends at CN=localhost -> CN=certserver test intermediate: its issuer "
        "CN=certserver test root is not given nor in the system trust store; browsers must "
        "already trust it"
    ]


def test_a_commercial_bundle_without_its_root_is_completed_from_the_system_store(
    tmp_path: Path, pki: TwoLevel
) -> None:
    from certserver.webcert.check import check
    from certserver.webcert.material import load

    cert, key = pki.leaf.write(tmp_path, "server")
    (tmp_path / "int.crt").write_bytes(certificate_pem(pki.intermediate.cert))
    material = load(cert, key, tmp_path / "int.crt")
    report = check(material, NOW, system_anchors=[pki.root.cert])
    assert report.ok
    assert (
        "PASS chain: complete: CN=localhost -> CN=certserver test intermediate -> "
        "CN=certserver test root (in the system trust store)"
    ) in [str(f) for f in report.findings]
    assert report.chain == (pki.intermediate.cert,) and report.anchor is None


def test_json_report(run: Cli, tmp_path: Path, pki: TwoLevel) -> None:
    result = _check(run, tmp_path, pki.leaf, "--json", bundle=scrambled_bundle(pki))
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert report["ok"] is True
    assert {f["check"] for f in report["findings"]} >= {"key", "chain", "names", "usage"}


def test_a_key_that_does_not_match_fails(run: Cli, tmp_path: Path, pki: TwoLevel) -> None:
    wrong = Issued(pki.leaf.cert, pki.intermediate.key)
    result = _check(
        run, tmp_path, wrong, bundle=certificates_pem([pki.intermediate.cert, pki.root.cert])
    )
    assert result.exit_code == 1
    assert [line.split(":")[0] for line in _lines(result.output, "FAIL")] == ["FAIL key"]
    assert "does not match the certificate CN=localhost" in result.output


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        (
            "expired",
            lambda root: leaf(root, not_before=NOW - 100 * DAY, not_after=NOW - DAY),
            "FAIL validity: CN=localhost expired on",
        ),
        (
            "not yet valid",
            lambda root: leaf(root, not_before=NOW + DAY, not_after=NOW + 90 * DAY),
            "FAIL validity: CN=localhost is not valid before",
        ),
        (
            "no serverAuth",
            lambda root: leaf(root, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,)),
            "FAIL usage: extendedKeyUsage lacks serverAuth",
        ),
        (
            "no EKU at all",
            lambda root: leaf(root, eku=None),
            "FAIL usage: no extendedKeyUsage with serverAuth",
        ),
        (
            "CN only",
            lambda root: leaf(root, san=False),
            "FAIL names: no subjectAltName, only the subject CN=localhost: browsers ignore the CN",
        ),
        (
            "RSA 1024",
            lambda root: leaf(root, key=rsa_key(1024)),
            "FAIL strength: CN=localhost has an RSA key of 1024 bits (under 2048)",
        ),
    ],
)
def test_each_leaf_problem_is_one_fail_line(
    run: Cli,
    tmp_path: Path,
    pki: TwoLevel,
    name: str,
    make,
    expected: str,  # type: ignore[no-untyped-def]
) -> None:
    result = _check(run, tmp_path, make(pki.root), bundle=certificate_pem(pki.root.cert))
    assert result.exit_code == 1, name
    fails = _lines(result.output, "FAIL")
    assert len(fails) == 1, result.output
    assert fails[0].startswith(expected), result.output


def test_the_same_leaf_without_that_problem_passes(run: Cli, tmp_path: Path, pki: TwoLevel) -> None:
    result = _check(
        run, tmp_path, leaf(pki.root, key=rsa_key(2048)), bundle=certificate_pem(pki.root.cert)
    )
    assert result.exit_code == 0, result.output
    assert not _lines(result.output, "FAIL") and not _lines(result.output, "WARN")


def test_an_expired_intermediate_fails(run: Cli, tmp_path: Path, pki: TwoLevel) -> None:
    old = ca("old intermediate", pki.root, not_before=NOW - 400 * DAY, not_after=NOW - DAY)
    result = _check(run, tmp_path, leaf(old), bundle=certificates_pem([old.cert, pki.root.cert]))
    assert result.exit_code == 1
    assert _lines(result.output, "FAIL") == [
        f"FAIL validity: CN=old intermediate expired on {(NOW - DAY):%Y-%m-%d}"
    ]


def test_an_issuer_that_is_not_a_ca_fails(run: Cli, tmp_path: Path, pki: TwoLevel) -> None:
    not_ca = ca("not a CA", pki.root, is_ca=False)
    result = _check(
        run, tmp_path, leaf(not_ca), bundle=certificates_pem([not_ca.cert, pki.root.cert])
    )
    assert result.exit_code == 1
    assert _lines(result.output, "FAIL") == [
        "FAIL chain: CN=not a CA signed CN=localhost but is not a CA"
    ]


def test_a_host_outside_the_sans_fails_and_one_inside_passes(
    run: Cli, tmp_path: Path, pki: TwoLevel
) -> None:
    wild = leaf(pki.root, ("*.example.com",), cn="example")
    root = certificate_pem(pki.root.cert)
    inside = _check(run, tmp_path, wild, "--host", "www.example.com", bundle=root)
    assert inside.exit_code == 0, inside.output
    outside = _check(run, tmp_path, wild, "--host", "a.b.example.com,example.com", bundle=root)
    assert outside.exit_code == 1
    assert _lines(outside.output, "FAIL") == [
        "FAIL names: a.b.example.com, example.com not covered by the SANs (*.example.com)"
    ]


def test_a_sha1_signature_fails(run: Cli, tmp_path: Path) -> None:
    key, cert = tmp_path / "sha1.key", tmp_path / "sha1.crt"
    run_openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-sha1", "-days", "30", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
        "-addext", "subjectAltName=DNS:localhost", "-addext", "extendedKeyUsage=serverAuth",
        "-addext", "basicConstraints=critical,CA:FALSE",
    )  # fmt: skip
    result = run("client-cert", "check", "--cert", str(cert), "--key", str(key))
    assert result.exit_code == 1
    assert _lines(result.output, "FAIL") == ["FAIL strength: CN=localhost is signed with SHA1"]


def test_a_leaf_valid_over_398_days_warns_but_passes(
    run: Cli, tmp_path: Path, pki: TwoLevel
) -> None:
    long = leaf(pki.root, not_after=NOW + 800 * DAY)
    result = _check(run, tmp_path, long, bundle=certificate_pem(pki.root.cert))
    assert result.exit_code == 0
    assert _lines(result.output, "WARN") == [
        "WARN lifetime: the leaf is valid for 801 days; browsers refuse public server "
        "certificates valid for more than 398"
    ]


def test_every_problem_at_once_is_reported_together(run: Cli, tmp_path: Path) -> None:
    root = ca("root")
    bad = leaf(
        root, key=rsa_key(1024), san=False, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,),
        not_before=NOW - 100 * DAY, not_after=NOW - DAY,
    )  # fmt: skip
    result = _check(run, tmp_path, bad)  # and no bundle: the chain is incomplete
    assert result.exit_code == 1
    checks = [line.split(":")[0] for line in _lines(result.output, "FAIL")]
    assert checks == ["FAIL chain", "FAIL validity", "FAIL usage", "FAIL names", "FAIL strength"]


# --- input forms ------------------------------------------------------------------------


def test_der_certificate_and_pkcs7_bundle_are_read(run: Cli, tmp_path: Path, pki: TwoLevel) -> None:
    (tmp_path / "leaf.der").write_bytes(der(pki.leaf.cert))
    (tmp_path / "leaf.key").write_bytes(
        pki.leaf.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )  # SEC1
    (tmp_path / "bundle.p7b").write_bytes(
        pkcs7.serialize_certificates(
            [pki.root.cert, pki.intermediate.cert], serialization.Encoding.DER
        )
    )
    result = run(
        "client-cert", "check", "--cert", str(tmp_path / "leaf.der"),
        "--key", str(tmp_path / "leaf.key"), "--ca-bundle", str(tmp_path / "bundle.p7b"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_a_bom_and_crlf_pem_with_the_chain_in_the_cert_file_is_read(
    run: Cli, tmp_path: Path, pki: TwoLevel
) -> None:
    cert = tmp_path / "all.crt"
    text = certificates_pem([pki.intermediate.cert, pki.leaf.cert, pki.root.cert])
    cert.write_bytes(b"\xef\xbb\xbf" + text.replace(b"\n", b"\r\n"))
    _, key = pki.leaf.write(tmp_path, "k")
    result = run("client-cert", "check", "--cert", str(cert), "--key", str(key))
    assert result.exit_code == 0, result.output
    assert "PASS key: matches the certificate (found as CN=localhost, not first)" in result.output


def test_pkcs12_with_its_passphrase_file_and_refused_without(
    run: Cli, tmp_path: Path, pki: TwoLevel
) -> None:
    p12 = tmp_path / "server.p12"
    p12.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"server", pki.leaf.key, pki.leaf.cert, [pki.intermediate.cert, pki.root.cert],
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )  # fmt: skip
    (tmp_path / "pass").write_text("s3cret\n")
    good = run(
        "client-cert", "check", "--cert", str(p12), "--p12-passphrase-file", str(tmp_path / "pass")
    )
    assert good.exit_code == 0, good.output
    without = run("client-cert", "check", "--cert", str(p12))
    assert without.exit_code == 1
    assert without.output.strip().splitlines() == [
        f"certserver: error: {p12}: is a PKCS#12 file that needs its passphrase: "
        "give --p12-passphrase-file"
    ]
    (tmp_path / "wrong").write_text("nope\n")
    wrong = run(
        "client-cert", "check", "--cert", str(p12), "--p12-passphrase-file", str(tmp_path / "wrong")
    )
    assert wrong.exit_code == 1
    assert "wrong passphrase" in wrong.output


def test_an_encrypted_key_needs_its_passphrase_file_and_never_prompts(
    run: Cli, tmp_path: Path, pki: TwoLevel
) -> None:
    cert, _ = pki.leaf.write(tmp_path, "server")
    key = tmp_path / "enc.key"
    key.write_bytes(
        pki.leaf.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    bundle = tmp_path / "root.crt"
    bundle.write_bytes(certificate_pem(pki.intermediate.cert) + certificate_pem(pki.root.cert))
    refused = run("client-cert", "check", "--cert", str(cert), "--key", str(key))
    assert refused.exit_code == 1  # stdin is not a terminal here: an error, not a prompt
    assert refused.output.strip().splitlines() == [
        f"certserver: error: {key}: the private key is encrypted: give --key-passphrase-file"
    ]
    (tmp_path / "pw").write_text("pw\n")
    accepted = run(
        "client-cert", "check", "--cert", str(cert), "--key", str(key),
        "--key-passphrase-file", str(tmp_path / "pw"), "--ca-bundle", str(bundle),
    )  # fmt: skip
    assert accepted.exit_code == 0, accepted.output


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "is empty"),
        (b"just text\n", "not a certificate, key, CSR or PKCS#7 bundle"),
    ],
)
def test_unreadable_inputs_are_one_line_naming_the_file(
    run: Cli, tmp_path: Path, pki: TwoLevel, content: bytes, problem: str
) -> None:
    cert, _ = pki.leaf.write(tmp_path, "server")
    key = tmp_path / "bad.key"
    key.write_bytes(content)
    result = run("client-cert", "check", "--cert", str(cert), "--key", str(key))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"certserver: error: {key}: ")
    assert problem in lines[0]


def test_a_certificate_where_the_key_should_be_is_refused(
    run: Cli, tmp_path: Path, pki: TwoLevel
) -> None:
    cert, _ = pki.leaf.write(tmp_path, "server")
    result = run("client-cert", "check", "--cert", str(cert), "--key", str(cert))
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"certserver: error: {cert}: should hold one private key, found a certificate"
    )


def test_a_key_in_the_bundle_is_refused(run: Cli, tmp_path: Path, pki: TwoLevel) -> None:
    cert, key = pki.leaf.write(tmp_path, "server")
    result = run(
        "client-cert", "check", "--cert", str(cert), "--key", str(key), "--ca-bundle", str(key)
    )
    assert result.exit_code == 1
    assert "holds a private key, which must not be in a CA bundle" in result.output


# --- client-cert default ------------------------------------------------------------------


def test_default_makes_a_fresh_self_signed_certificate_that_passes_the_check(
    run: Cli, tmp_path: Path
) -> None:
    import os
    import stat

    from cryptography import x509

    result = run(
        "client-cert",
        "default",
        "--host",
        "ccm.example.com,10.0.0.5",
        "--host",
        "ccm",
        "--out",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    cert_path, key_path = tmp_path / "certificate.crt", tmp_path / "certificate.key"
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(v) for v in sans.get_values_for_type(x509.DNSName)] == ["ccm.example.com", "ccm"]
    assert [str(v) for v in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= (397 * DAY + DAY)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    checked = run(
        "client-cert", "check", "--cert", str(cert_path), "--key", str(key_path),
        "--host", "ccm.example.com,10.0.0.5,ccm",
    )  # fmt: skip
    assert checked.exit_code == 0, checked.output
    assert "WARN" not in checked.output
    again = run("client-cert", "default", "--host", "ccm", "--out", str(tmp_path))
    assert again.exit_code == 1  # never over an existing certificate or key
    assert again.output.strip() == f"certserver: error: {cert_path}: already exists"
    other = tmp_path / "other"
    other.mkdir()
    run("client-cert", "default", "--host", "ccm", "--out", str(other))
    assert (other / "certificate.crt").read_bytes() != cert_path.read_bytes()  # fresh each time


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--days", "398"], "398 is not in the range 1<=x<=397"),
        (["--host", "*.example.com"], "wildcards are not allowed"),
        (["--key-type", "dsa"], "'dsa' is not one of"),
        (["--tomcat-home", "/nonexistent"], "need --install"),
    ],
)
def test_default_refuses_bad_options(
    run: Cli, tmp_path: Path, args: list[str], message: str
) -> None:
    result = run("client-cert", "default", "--host", "ccm", "--out", str(tmp_path), *args)
    assert result.exit_code != 0
    assert message in result.output
    assert not list(tmp_path.iterdir())


def test_default_rsa_on_request(run: Cli, tmp_path: Path) -> None:
    from cryptography import x509

    result = run(
        "client-cert", "default", "--host", "ccm", "--key-type", "rsa-2048", "--out", str(tmp_path)
    )
    assert result.exit_code == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "certificate.crt").read_bytes())
    assert cert.public_key().key_size == 2048  # type: ignore[union-attr]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_encipherment and usage.digital_signature


def _on_a_terminal(args: list[str], answer: str) -> tuple[int, str, str]:
    """Run the real command with a pseudo-terminal as stdin; type ``answer`` at its prompt."""
    import os
    import pty
    import select
    import subprocess
    import time

    from .conftest import certserver_script

    master, slave = pty.openpty()
    process = subprocess.Popen(
        [certserver_script(), *args], stdin=slave, stderr=slave, stdout=subprocess.PIPE
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    while b"passphrase for" not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            seen += os.read(master, 1024)
    os.write(master, answer.encode() + b"\r")
    stdout, _ = process.communicate(timeout=30)
    with contextlib.suppress(OSError):
        while select.select([master], [], [], 0.2)[0]:
            seen += os.read(master, 1024)
    os.close(master)
    return process.returncode, stdout.decode(), seen.decode(errors="replace")


def test_on_a_terminal_an_encrypted_key_asks_for_its_passphrase(
    tmp_path: Path, pki: TwoLevel
) -> None:
    cert, _ = pki.leaf.write(tmp_path, "server")
    key = tmp_path / "enc.key"
    key.write_bytes(
        pki.leaf.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"typed secret"),
        )
    )
    args = ["client-cert", "check", "--cert", str(cert), "--key", str(key)]
    code, out, terminal = _on_a_terminal(args, "typed secret")
    assert f"passphrase for {key}" in terminal
    assert "typed secret" not in terminal  # not echoed
    assert "PASS key: matches the certificate" in out
    assert code == 1  # the chain is incomplete without a bundle: the check itself ran
    wrong_code, wrong_out, wrong_terminal = _on_a_terminal(args, "not it")
    assert wrong_code == 1 and "PASS key" not in wrong_out
    assert "wrong passphrase for an encrypted private key" in wrong_terminal
