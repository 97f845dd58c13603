"""The package's files against the real openssl: verify purposes and mutual TLS handshakes."""

from __future__ import annotations

import pytest

from certserver.identity import Component
from certserver.keys import KeySpec

from .conftest import Extracted, make_extracted, need_tool, run_process
from .openssl_tools import s_client, s_server

TLS_VERSIONS = ["tls1_2", "tls1_3"]


@pytest.mark.parametrize("purpose", ["sslserver", "sslclient"])
def test_every_component_verifies_for_both_purposes(alpha: Extracted, purpose: str) -> None:
    openssl = need_tool("openssl")
    for component in Component:
        done = run_process(
            openssl,
            "verify",
            "-x509_strict",
            "-CAfile",
            str(alpha.ca(component)),
            "-purpose",
            purpose,
            str(alpha.cert(component)),
        )
        assert done.returncode == 0, (component, done.stdout, done.stderr)
        assert done.stdout.strip().endswith(": OK")


def test_another_deployments_ca_does_not_verify(alpha: Extracted, bravo: Extracted) -> None:
    openssl = need_tool("openssl")
    done = run_process(
        openssl,
        "verify",
        "-CAfile",
        str(bravo.ca(Component.CCM)),
        "-purpose",
        "sslclient",
        str(alpha.cert(Component.CCO)),
    )
    assert done.returncode != 0
    assert "unable to get local issuer certificate" in done.stdout + done.stderr


def test_each_key_matches_its_certificate(alpha: Extracted) -> None:
    openssl = need_tool("openssl")
    for component in Component:
        cert_pub = run_process(
            openssl, "x509", "-in", str(alpha.cert(component)), "-noout", "-pubkey"
        )
        key_pub = run_process(openssl, "pkey", "-in", str(alpha.key(component)), "-pubout")
        assert cert_pub.returncode == key_pub.returncode == 0
        assert cert_pub.stdout == key_pub.stdout
    other = run_process(openssl, "pkey", "-in", str(alpha.key(Component.CCO)), "-pubout")
    mine = run_process(openssl, "x509", "-in", str(alpha.cert(Component.CCM)), "-noout", "-pubkey")
    assert other.stdout != mine.stdout


@pytest.mark.parametrize("tls", TLS_VERSIONS)
def test_ccm_server_accepts_cco_of_its_deployment(alpha: Extracted, tls: str) -> None:
    ccm, cco = Component.CCM, Component.CCO
    with s_server(alpha.cert(ccm), alpha.key(ccm), alpha.ca(ccm), tls) as port:
        run = s_client(port, alpha.ca(cco), tls, alpha.cert(cco), alpha.key(cco))
    assert run.served, run.output
    assert "Verify return code: 0 (ok)" in run.output


@pytest.mark.parametrize("tls", TLS_VERSIONS)
def test_ccm_server_refuses_a_client_without_certificate(alpha: Extracted, tls: str) -> None:
    ccm, cco = Component.CCM, Component.CCO
    with s_server(alpha.cert(ccm), alpha.key(ccm), alpha.ca(ccm), tls) as port:
        run = s_client(port, alpha.ca(cco), tls)
    assert not run.served
    expected = "alert handshake failure" if tls == "tls1_2" else "alert certificate required"
    assert expected in run.output


@pytest.mark.parametrize("tls", TLS_VERSIONS)
def test_ccm_server_refuses_cco_of_another_deployment(
    alpha: Extracted, bravo: Extracted, tls: str
) -> None:
    ccm, cco = Component.CCM, Component.CCO
    with s_server(alpha.cert(ccm), alpha.key(ccm), alpha.ca(ccm), tls) as port:
        run = s_client(port, alpha.ca(cco), tls, bravo.cert(cco), bravo.key(cco))
    assert not run.served
    assert "alert unknown ca" in run.output


@pytest.mark.parametrize("tls", TLS_VERSIONS)
def test_cco_client_refuses_a_ccm_of_another_deployment(
    alpha: Extracted, bravo: Extracted, tls: str
) -> None:
    ccm, cco = Component.CCM, Component.CCO
    with s_server(bravo.cert(ccm), bravo.key(ccm), bravo.ca(ccm), tls) as port:
        run = s_client(port, alpha.ca(cco), tls, alpha.cert(cco), alpha.key(cco))
    assert not run.served
    assert "unable to get local issuer certificate" in run.output or "verify error" in run.output


@pytest.fixture(scope="module", params=[KeySpec.RSA_2048, KeySpec.EC_P384], ids=lambda s: s.value)
def other_key_type(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Extracted:
    spec: KeySpec = request.param
    return make_extracted(tmp_path_factory.mktemp(spec.value), spec.value, spec)


def test_other_key_types_verify_and_shake_hands(
    other_key_type: Extracted, alpha: Extracted
) -> None:
    openssl = need_tool("openssl")
    deployment = other_key_type
    for component in Component:
        for purpose in ("sslserver", "sslclient"):
            done = run_process(
                openssl,
                "verify",
                "-x509_strict",
                "-CAfile",
                str(deployment.ca(component)),
                "-purpose",
                purpose,
                str(deployment.cert(component)),
            )
            assert done.returncode == 0, (component, purpose, done.stdout, done.stderr)
    ccm, cco = Component.CCM, Component.CCO
    for tls in TLS_VERSIONS:
        with s_server(deployment.cert(ccm), deployment.key(ccm), deployment.ca(ccm), tls) as port:
            accepted = s_client(
                port, deployment.ca(cco), tls, deployment.cert(cco), deployment.key(cco)
            )
            refused = s_client(port, deployment.ca(cco), tls, alpha.cert(cco), alpha.key(cco))
        assert accepted.served, accepted.output
        assert not refused.served and "alert unknown ca" in refused.output
