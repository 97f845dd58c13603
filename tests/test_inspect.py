"""``certserver inspect``: certificates, keys, CSRs and packages, PEM or DER."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from certserver.identity import Component

from .conftest import Cli, Extracted, run_openssl


def _json(run: Cli, *paths: Path) -> list[dict[str, object]]:
    result = run("inspect", "--json", *map(str, paths))
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_a_component_certificate_shows_its_identity(run: Cli, alpha: Extracted) -> None:
    report = _json(run, alpha.cert(Component.GUA))[0]["contents"][0]  # type: ignore[index]
    ccid = alpha.result.deployment.ccid.value
    assert report["kind"] == "certificate"
    assert report["identity"] == {
        "spiffe_id": f"spiffe://{ccid}/gua",
        "ccid": ccid,
        "component": "gua",
    }
    assert report["sans"] == [f"URI:spiffe://{ccid}/gua", "DNS:localhost", "IP:127.0.0.1"]
    assert report["key"] == "EC secp256r1 256"
    assert report["status"] == "valid" and 728 <= report["days_left"] <= 730
    names = {ext["name"]: ext for ext in report["extensions"]}
    assert names["basicConstraints"] == {
        "name": "basicConstraints",
        "critical": True,
        "value": "CA:FALSE",
    }
    assert names["extendedKeyUsage"]["value"] == "serverAuth, clientAuth"
    cert = x509.load_pem_x509_certificate(alpha.cert(Component.GUA).read_bytes())
    assert report["fingerprint_sha256"] == cert.fingerprint(hashes.SHA256()).hex()


def test_der_and_pem_give_the_same_report(run: Cli, alpha: Extracted, tmp_path: Path) -> None:
    cert = x509.load_pem_x509_certificate(alpha.cert(Component.CCM).read_bytes())
    der = tmp_path / "ccm.der"
    der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    pem_report, der_report = (r["contents"][0] for r in _json(run, alpha.cert(Component.CCM), der))  # type: ignore[index]
    assert pem_report.pop("encoding") == "PEM" and der_report.pop("encoding") == "DER"
    assert pem_report == der_report


def test_a_key_shows_type_and_public_fingerprint_never_the_key(run: Cli, alpha: Extracted) -> None:
    import base64

    key_path = alpha.key(Component.CCO)
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    secret = key.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
    forms = [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode()[:20],
        ":".join(f"{b:02x}" for b in secret[:8]),
    ]
    text = run("inspect", str(key_path))
    as_json = run("inspect", "--json", str(key_path))
    assert text.exit_code == as_json.exit_code == 0
    assert "private key: EC secp256r1 256" in text.stdout
    for output in (text.stdout, as_json.stdout):
        for form in forms:
            assert form not in output
    report = json.loads(as_json.stdout)[0]["contents"][0]
    cert = x509.load_pem_x509_certificate(alpha.cert(Component.CCO).read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert report["public_key_sha256"] == hashlib.sha256(spki).hexdigest()


def test_an_encrypted_key_is_named_not_decrypted(
    run: Cli, alpha: Extracted, tmp_path: Path
) -> None:
    key = serialization.load_pem_private_key(alpha.key(Component.CCM).read_bytes(), None)
    path = tmp_path / "enc.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    assert _json(run, path)[0]["contents"] == [{"kind": "encrypted-private-key", "encoding": "PEM"}]


def test_a_csr_is_described(run: Cli, alpha: Extracted, tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(alpha.key(Component.CCM).read_bytes(), None)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ccm")]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("ccm.example.com")]), False)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    path = tmp_path / "ccm.csr"
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    report = _json(run, path)[0]["contents"][0]  # type: ignore[index]
    assert report["kind"] == "csr" and report["signature_valid"] is True
    assert report["sans"] == ["DNS:ccm.example.com"] and report["identity"] is None


def test_a_package_is_checked_against_its_manifest(
    run: Cli, alpha: Extracted, tmp_path: Path
) -> None:
    report = _json(run, alpha.result.package_path)[0]["contents"][0]  # type: ignore[index]
    assert report["kind"] == "package" and report["manifest_ok"] and report["problems"] == []
    modes = {m["path"]: m["mode"] for m in report["members"]}
    assert modes["ccm/mgmtserver.key"] == "0600" and modes["ccm/mgmtserver.crt"] == "0644"
    # the twin: one changed member is reported
    tampered = tmp_path / "tampered.zip"
    with (
        zipfile.ZipFile(alpha.result.package_path) as source,
        zipfile.ZipFile(tampered, "w") as out,
    ):
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "cco/ca.crt":
                data = alpha.cert(Component.CCM).read_bytes()
            out.writestr(info, data)
    result = run("inspect", "--json", str(tampered))
    assert result.exit_code == 1
    assert result.stderr == (
        f"certserver: error: {tampered}: package does not match its manifest\n"
    )
    bad = json.loads(result.stdout)[0]["contents"][0]
    assert not bad["manifest_ok"]
    assert bad["problems"] == ["cco/ca.crt: SHA-256 does not match the manifest"]


def test_unreadable_inputs_are_one_line_errors(run: Cli, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"hello")
    broken = tmp_path / "broken.pem"
    broken.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    not_a_package = tmp_path / "plain.zip"
    with zipfile.ZipFile(not_a_package, "w") as archive:
        archive.writestr("readme.txt", "hi")
    for path, problem in [
        (junk, "not a certificate, key, CSR or PKCS#7 bundle in PEM or DER"),
        (broken, "damaged certificate block"),
        (tmp_path / "missing.pem", "no such file"),
        (tmp_path, "is a directory"),
        (not_a_package, "unsafe zip entry 'readme.txt': outside the package layout"),
    ]:
        result = run("inspect", str(path))
        assert result.exit_code == 1
        assert result.stderr.strip() == f"certserver: error: {path}: {problem}"
        assert len(result.stderr.strip().splitlines()) == 1


def test_a_pkcs7_bundle_lists_its_certificates_quietly(
    run: Cli, alpha: Extracted, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle.p7b"
    run_openssl(
        "crl2pkcs7",
        "-nocrl",
        "-certfile",
        str(alpha.cert(Component.CCM)),
        "-certfile",
        str(alpha.ca(Component.CCM)),
        "-out",
        str(bundle),
    )
    result = run("inspect", "--json", str(bundle))
    assert result.exit_code == 0 and result.stderr == ""
    subjects = [r["subject"] for r in json.loads(result.stdout)[0]["contents"]]
    assert len(subjects) == 2 and subjects[0].startswith("CN=ccm, ")


def test_special_files_are_refused_without_reading(run: Cli, tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        result = run("inspect", str(path))
        assert result.exit_code == 1
        assert result.stderr == f"certserver: error: {path}: is not a regular file\n"


def test_an_unterminated_pem_block_is_refused_at_once(run: Cli, tmp_path: Path) -> None:
    path = tmp_path / "many.pem"
    path.write_text("-----BEGIN A-----\n" * 20000)  # quadratic with a backtracking regex
    result = run("inspect", str(path))
    assert result.stderr == f"certserver: error: {path}: unterminated a block\n"


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_malformed_packages_are_one_line_errors(run: Cli, alpha: Extracted, tmp_path: Path) -> None:
    cases = {
        "not-json": ({"manifest.json": b"[[[["}, "manifest.json is not JSON"),
        "list": (
            {"manifest.json": b"[]"},
            "manifest.json is damaged: no list of files with hashes",
        ),
        "mixed": (
            {"manifest.json": json.dumps({"files": [{"path": 1, "sha256": "x"}]}).encode()},
            "manifest.json is damaged: no list of files with hashes",
        ),
        "deep": ({"manifest.json": b"[" * 200000}, "manifest.json is not JSON"),
    }
    for label, (members, problem) in cases.items():
        path = _zip(tmp_path / f"{label}.zip", members)
        result = run("inspect", str(path))
        assert result.exit_code == 1, label
        assert result.stderr == f"certserver: error: {path}: {problem}\n", label


def test_a_zip_inside_a_package_is_not_opened(run: Cli, alpha: Extracted, tmp_path: Path) -> None:
    inner = alpha.result.package_path.read_bytes()
    digest = hashlib.sha256(inner).hexdigest()
    manifest = {
        "format_version": 1,
        "deployment": "outer",
        "ccid": alpha.result.deployment.ccid.value,
        "files": [{"path": "ccm/ca.crt", "sha256": digest}],
    }
    path = _zip(
        tmp_path / "outer.zip",
        {"manifest.json": json.dumps(manifest).encode(), "ccm/ca.crt": inner},
    )
    report = _json(run, path)[0]["contents"][0]  # type: ignore[index]
    assert report["members"][0]["contents"] == [{"kind": "nested-zip"}]


def test_a_pkcs12_file_is_read_with_its_passphrase_file(
    run: Cli, alpha: Extracted, tmp_path: Path
) -> None:
    secret = tmp_path / "pass.txt"
    secret.write_text("s3cret passphrase\n")
    bundle = tmp_path / "ccm.p12"
    run_openssl(
        "pkcs12",
        "-export",
        "-in",
        str(alpha.cert(Component.CCM)),
        "-inkey",
        str(alpha.key(Component.CCM)),
        "-certfile",
        str(alpha.ca(Component.CCM)),
        "-passout",
        f"file:{secret}",
        "-out",
        str(bundle),
    )
    result = run("inspect", "--json", "--p12-passphrase-file", str(secret), str(bundle))
    assert result.exit_code == 0, result.stderr
    kinds = [r["kind"] for r in json.loads(result.stdout)[0]["contents"]]
    assert kinds == ["certificate", "certificate", "private-key"]
    assert "s3cret" not in result.stdout
    # the twins: no passphrase, and a wrong one
    bare = run("inspect", str(bundle))
    assert bare.exit_code == 1
    assert bare.stderr == f"certserver: error: {bundle}: a PKCS#12 file that needs its passphrase\n"
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("nope\n")
    refused = run("inspect", "--p12-passphrase-file", str(wrong), str(bundle))
    assert refused.exit_code == 1 and "wrong passphrase" in refused.stderr
    assert "nope" not in refused.stderr


def test_the_reader_takes_the_forms_people_hand_over(
    run: Cli, alpha: Extracted, tmp_path: Path
) -> None:
    """CRLF line ends, a BOM, text around the armour, PKCS#1 and SEC1 keys."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    cert_pem = alpha.cert(Component.CCM).read_bytes()
    ec_key = serialization.load_pem_private_key(alpha.key(Component.CCM).read_bytes(), None)
    forms = {
        "crlf.pem": cert_pem.replace(b"\n", b"\r\n"),
        "bom.pem": b"\xef\xbb\xbf" + cert_pem,
        "chatty.pem": b"Subject: ccm\nIssued by our CA\n" + cert_pem + b"\n-- end --\n",
        "sec1.key": ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
        "pkcs1.key": rsa.generate_private_key(65537, 2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    }
    for name, data in forms.items():
        path = tmp_path / name
        path.write_bytes(data)
        result = run("inspect", "--json", str(path))
        assert result.exit_code == 0, (name, result.stderr)
        kinds = [r["kind"] for r in json.loads(result.stdout)[0]["contents"]]
        assert kinds == (["private-key"] if name.endswith(".key") else ["certificate"]), name
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    refused = run("inspect", str(empty))
    assert refused.exit_code == 1 and refused.stderr == f"certserver: error: {empty}: is empty\n"


def test_encrypted_keys_open_with_a_passphrase_file_and_duplicates_are_kept_once(
    run: Cli, alpha: Extracted, tmp_path: Path
) -> None:
    secret = tmp_path / "pass.txt"
    secret.write_text("correct horse\n")
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("battery staple\n")
    pkcs8 = tmp_path / "pkcs8.key"
    traditional = tmp_path / "traditional.key"
    for path, extra in ((pkcs8, []), (traditional, ["-traditional"])):
        run_openssl(
            "pkey",
            "-in",
            str(alpha.key(Component.CCM)),
            "-aes256",
            "-passout",
            f"file:{secret}",
            *extra,
            "-out",
            str(path),
        )
        opened = run("inspect", "--json", "--key-passphrase-file", str(secret), str(path))
        assert opened.exit_code == 0, opened.stderr
        assert json.loads(opened.stdout)[0]["contents"][0]["kind"] == "private-key"
        refused = run("inspect", "--key-passphrase-file", str(wrong), str(path))
        assert refused.stderr == (
            f"certserver: error: {path}: wrong passphrase for an encrypted private key\n"
        )
    bundle = tmp_path / "bundle.pem"
    cert = alpha.cert(Component.CCM).read_bytes()
    bundle.write_bytes(cert + alpha.ca(Component.CCM).read_bytes() + cert)
    kinds = json.loads(run("inspect", "--json", str(bundle)).stdout)[0]["contents"]
    assert len(kinds) == 2


def test_a_der_encrypted_key_opens_and_a_password_less_p12_still_opens(
    run: Cli, alpha: Extracted, tmp_path: Path
) -> None:
    secret = tmp_path / "pass.txt"
    secret.write_text("correct horse\n")
    der = tmp_path / "enc.der"
    run_openssl(
        "pkcs8",
        "-topk8",
        "-in",
        str(alpha.key(Component.CCM)),
        "-outform",
        "DER",
        "-v2",
        "aes-256-cbc",
        "-passout",
        f"file:{secret}",
        "-out",
        str(der),
    )
    opened = run("inspect", "--json", "--passphrase-file", str(secret), str(der))
    assert opened.exit_code == 0, opened.stderr
    assert json.loads(opened.stdout)[0]["contents"][0]["kind"] == "private-key"
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("nope\n")
    refused = run("inspect", "--passphrase-file", str(wrong), str(der))
    assert "wrong passphrase" in refused.stderr
    bare = tmp_path / "bare.p12"
    run_openssl(
        "pkcs12",
        "-export",
        "-in",
        str(alpha.cert(Component.CCM)),
        "-inkey",
        str(alpha.key(Component.CCM)),
        "-passout",
        "pass:",
        "-out",
        str(bare),
    )
    assert run("inspect", "--passphrase-file", str(secret), str(bare)).exit_code == 0
