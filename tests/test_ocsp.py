"""The OCSP responder and the CRL over HTTP, asked with the real openssl."""

from __future__ import annotations

from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from .conftest import Cli, extract, need_tool, run_process
from .test_serve import serving


def _ask(port: int, ca: Path, *target: str) -> str:
    done = run_process(
        need_tool("openssl"), "ocsp", "-issuer", str(ca), *target,
        "-url", f"http://127.0.0.1:{port}/ocsp", "-CAfile", str(ca),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_good_revoked_and_unknown_with_the_nonce(
    run: Cli, home: Path, out_dir: Path, tmp_path: Path
) -> None:
    assert (
        run(
            "deployment", "create", "asked", "--host", "all=localhost", "--out", str(out_dir)
        ).exit_code
        == 0
    )
    x = extract(out_dir / "asked_certs.zip", tmp_path / "x")
    assert run("revoke", "asked", "--component", "gua", "--reason", "key-compromise").exit_code == 0
    ca = x / "ccm" / "ca.crt"
    with serving(home, "--insecure-http") as (port, _process):
        good = _ask(port, ca, "-cert", str(x / "cco" / "gateway.crt"))
        revoked = _ask(port, ca, "-cert", str(x / "gua" / "gua.crt"))
        unknown = _ask(port, ca, "-serial", "0xdeadbeef")
        junk = httpx.post(f"http://127.0.0.1:{port}/ocsp", content=b"not a request", timeout=15)
        stranger = (
            ocsp.OCSPRequestBuilder()
            .add_certificate(
                x509.load_pem_x509_certificate((x / "cco" / "gateway.crt").read_bytes()),
                x509.load_pem_x509_certificate(
                    (x / "cco" / "gateway.crt").read_bytes()
                ),  # not its CA
                hashes.SHA1(),
            )
            .build()
        )
        unauthorized = httpx.post(
            f"http://127.0.0.1:{port}/ocsp", content=stranger.public_bytes(Encoding.DER), timeout=15
        )
        crl = httpx.get(f"http://127.0.0.1:{port}/crl/asked.crl", timeout=15)
        several = run_process(
            need_tool("openssl"), "ocsp", "-issuer", str(ca),
            "-cert", str(x / "cco" / "gateway.crt"), "-cert", str(x / "gua" / "gua.crt"),
            "-url", f"http://127.0.0.1:{port}/ocsp", "-CAfile", str(ca),
        )  # fmt: skip
    for answer in (good, revoked, unknown):
        assert "Response verify OK" in answer and "nonce" not in answer.lower()
    assert "gateway.crt: good" in good
    assert "gua.crt: revoked" in revoked and "Reason: keyCompromise" in revoked
    assert "0xdeadbeef: unknown" in unknown
    assert (
        ocsp.load_der_ocsp_response(junk.content).response_status
        is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )
    assert (
        ocsp.load_der_ocsp_response(unauthorized.content).response_status
        is ocsp.OCSPResponseStatus.UNAUTHORIZED
    )
    assert "malformedrequest" in (several.stdout + several.stderr).lower().replace(" ", "")
    assert crl.headers["content-type"] == "application/pkix-crl"
    assert len(x509.load_der_x509_crl(crl.content)) == 1


def test_with_a_base_url_new_certificates_name_the_crl_and_ocsp(tmp_path: Path) -> None:
    from .conftest import certserver_script, env_for

    home = tmp_path / "home"
    env = {**env_for(home), "CERTSERVER_BASE_URL": "https://certs.example.com:8443/"}
    done = run_process(
        certserver_script(), "deployment", "create", "named", "--out", str(tmp_path), env=env
    )
    assert done.returncode == 0, done.stderr
    x = extract(tmp_path / "named_certs.zip", tmp_path / "x")
    cert = x509.load_pem_x509_certificate((x / "cco" / "gateway.crt").read_bytes())
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [n.value for n in points[0].full_name] == [
        "https://certs.example.com:8443/crl/named.crl"
    ]
    access = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [a.access_location.value for a in access] == ["https://certs.example.com:8443/ocsp"]
    plain = run_process(
        certserver_script(),
        "deployment",
        "create",
        "unnamed",
        "--out",
        str(tmp_path),
        env=env_for(home),
    )
    assert plain.returncode == 0
    y = extract(tmp_path / "unnamed_certs.zip", tmp_path / "y")
    other = x509.load_pem_x509_certificate((y / "cco" / "gateway.crt").read_bytes())
    assert not any(isinstance(e.value, x509.CRLDistributionPoints) for e in other.extensions)
    bad = run_process(
        certserver_script(),
        "deployment",
        "list",
        env={**env_for(home), "CERTSERVER_BASE_URL": "ftp://x"},
    )
    assert bad.returncode == 1 and "CERTSERVER_BASE_URL" in bad.stderr
