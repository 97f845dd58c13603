"""certserver.mtls: Python server and client contexts, real handshakes, and the identity check."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from certserver.authority import CertificateAuthority
from certserver.errors import FileProblem, PeerRefused, RefusalReason
from certserver.identity import Ccid, Component, DeploymentName, Identity
from certserver.keys import KeySpec
from certserver.mtls import ComponentCredentials
from certserver.profiles import DEFAULT_ORGANIZATION

from .conftest import LOOPBACK_HOSTS, Extracted
from .tls_tools import connect, serve_once, write_folder
from .tls_tools import handshake as _handshake

CCM, CCO = Component.CCM, Component.CCO


def test_same_deployment_handshake_gives_both_identities(alpha: Extracted) -> None:
    server = ComponentCredentials.from_folder(alpha.folder(CCM))
    client = ComponentCredentials.from_folder(alpha.folder(CCO))
    checked, server_error, client_error, seen_server = _handshake(server, client)
    ccid = alpha.result.deployment.ccid
    assert server_error is None and client_error is None
    assert checked == Identity(ccid, CCO)
    assert seen_server == Identity(ccid, CCM)


def test_another_deployments_client_fails_the_handshake(alpha: Extracted, bravo: Extracted) -> None:
    server = ComponentCredentials.from_folder(alpha.folder(CCM))
    foreign = ComponentCredentials.from_folder(bravo.folder(CCO))
    # bravo's client does not trust alpha's CA either; give it alpha's anchors so that only
    # the server's verification of the client certificate is under test
    foreign = ComponentCredentials(
        foreign.identity, foreign.cert_file, foreign.key_file, alpha.ca(CCO), None
    )
    checked, server_error, client_error, _ = _handshake(server, foreign)
    assert server_error is not None and "certificate" in server_error.lower()
    assert client_error is not None
    assert checked is None


def test_a_client_without_certificate_fails_the_handshake(alpha: Extracted) -> None:
    server = ComponentCredentials.from_folder(alpha.folder(CCM))
    port, outcome, thread = serve_once(
        server.server_context(), server.peer_check(allowed=set(Component)).verify
    )
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare.load_verify_locations(cafile=str(alpha.ca(CCO)))
    tls, client_error = connect(bare, port)
    thread.join(20)
    assert tls is None and client_error is not None
    assert outcome.handshake_error is not None
    assert "certificate" in outcome.handshake_error.lower()


def test_contexts_require_tls_1_2_and_verified_peers(alpha: Extracted) -> None:
    server = ComponentCredentials.from_folder(alpha.folder(CCM)).server_context()
    client = ComponentCredentials.from_folder(alpha.folder(CCO)).client_context()
    for context in (server, client):
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert context.minimum_version is ssl.TLSVersion.TLSv1_2
        assert context.verify_flags & ssl.VERIFY_X509_STRICT
    assert client.check_hostname


# -- two deployments under one trust anchor: only the CCID check keeps them apart ---------


@pytest.fixture(scope="module")
def shared_anchor(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A test-only CA that signs components of two deployments (as one enterprise root might)."""
    root_dir = tmp_path_factory.mktemp("shared")
    now = dt.datetime.now(dt.UTC)
    spec = KeySpec.EC_P256
    anchor = CertificateAuthority.create(
        DeploymentName("enterprise-root"), Ccid.generate(), DEFAULT_ORGANIZATION, spec, now
    )
    folders: dict[str, Path] = {}
    first, second = Ccid.generate(), Ccid.generate()
    for label, ccid, component in [
        ("first-ccm", first, CCM),
        ("first-cco", first, CCO),
        ("first-mon", first, Component.MONITOR),
        ("second-cco", second, CCO),
    ]:
        key = spec.generate()
        cert = anchor.issue(
            Identity(ccid, component),
            key.public_key(),
            spec,
            DEFAULT_ORGANIZATION,
            LOOPBACK_HOSTS,
            now,
            30,
        )
        folders[label] = write_folder(
            root_dir / label / component.folder, component, cert, key, [anchor.certificate]
        )
    no_identity = anchor.issue(
        Identity(first, CCO),
        (k := spec.generate()).public_key(),
        spec,
        DEFAULT_ORGANIZATION,
        LOOPBACK_HOSTS,
        now,
        30,
    )
    stripped = _without_uri_san(anchor, no_identity, k.public_key(), now)
    folders["no-identity"] = write_folder(
        root_dir / "no-identity" / "cco", CCO, stripped, k, [anchor.certificate]
    )
    return folders


def _without_uri_san(
    ca: CertificateAuthority, cert: x509.Certificate, public_key: object, now: dt.datetime
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    for ext in cert.extensions:
        if isinstance(ext.value, x509.SubjectAlternativeName):
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost")]), False
            )
        else:
            builder = builder.add_extension(ext.value, ext.critical)
    return builder.sign(ca.key, ca.spec.signature_hash())


def _creds(folders: dict[str, Path], label: str, component: Component) -> ComponentCredentials:
    return ComponentCredentials.from_folder(folders[label], component)


def test_shared_anchor_accepts_its_own_deployment(shared_anchor: dict[str, Path]) -> None:
    server = _creds(shared_anchor, "first-ccm", CCM)
    checked, server_error, _, _ = _handshake(server, _creds(shared_anchor, "first-cco", CCO))
    assert server_error is None
    assert checked == Identity(server.identity.ccid, CCO)


def test_shared_anchor_refuses_another_ccid_after_the_handshake(
    shared_anchor: dict[str, Path],
) -> None:
    server = _creds(shared_anchor, "first-ccm", CCM)
    client = _creds(shared_anchor, "second-cco", CCO)
    checked, server_error, client_error, seen_server = _handshake(server, client)
    assert server_error is None and client_error is None  # the chain is fine...
    assert isinstance(checked, PeerRefused)  # ...the identity is not
    assert checked.reason == "other-deployment"
    assert str(client.identity.ccid) in checked.message
    # and the client, checking the server the same way, refuses it too
    assert isinstance(seen_server, PeerRefused)
    assert seen_server.reason == "other-deployment"


def test_a_component_not_allowed_is_refused(shared_anchor: dict[str, Path]) -> None:
    server = _creds(shared_anchor, "first-ccm", CCM)
    only_cco = server.peer_check(allowed={CCO})
    checked, *_ = _handshake(
        server, _creds(shared_anchor, "first-mon", Component.MONITOR), only_cco
    )
    assert isinstance(checked, PeerRefused)
    assert checked.reason == "component-not-allowed"
    checked, *_ = _handshake(server, _creds(shared_anchor, "first-cco", CCO), only_cco)
    assert checked == Identity(server.identity.ccid, CCO)


def test_a_peer_without_identity_is_refused(shared_anchor: dict[str, Path]) -> None:
    server = _creds(shared_anchor, "first-ccm", CCM)
    folder = shared_anchor["no-identity"]
    client = ComponentCredentials(
        server.identity, folder / "gateway.crt", folder / "gateway.key", folder / "ca.crt", None
    )
    checked, server_error, _, _ = _handshake(server, client)
    assert server_error is None
    assert isinstance(checked, PeerRefused)
    assert checked.reason == "no-identity"


def test_credentials_refuse_a_folder_without_identity(shared_anchor: dict[str, Path]) -> None:
    with pytest.raises(FileProblem, match="URI SANs"):
        ComponentCredentials.from_folder(shared_anchor["no-identity"])


def test_credentials_refuse_a_key_that_does_not_match(alpha: Extracted, tmp_path: Path) -> None:
    folder = tmp_path / "ccm"
    folder.mkdir()
    for name in ("mgmtserver.crt", "ca.crt"):
        (folder / name).write_bytes((alpha.folder(CCM) / name).read_bytes())
    (folder / "mgmtserver.key").write_bytes(alpha.key(CCO).read_bytes())
    creds = ComponentCredentials.from_folder(folder)
    with pytest.raises(FileProblem, match=r"mgmtserver\.key: cannot load key and certificate"):
        creds.server_context()


# -- two deployment CAs under one root: the issuing CA is pinned too -----------------------


def _intermediate(
    root: CertificateAuthority, name: str, ccid: Ccid, now: dt.datetime
) -> CertificateAuthority:
    """A deployment CA signed by ``root`` (as an enterprise root would sign each one)."""
    from certserver.profiles import ca_extensions, ca_subject

    key = KeySpec.EC_P256.generate()
    builder = (
        x509.CertificateBuilder()
        .subject_name(ca_subject(DeploymentName(name), ccid, DEFAULT_ORGANIZATION))
        .issuer_name(root.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()), False
        )
    )
    for extension, critical in ca_extensions(key.public_key()):
        builder = builder.add_extension(extension, critical)
    return CertificateAuthority(key, builder.sign(root.key, root.spec.signature_hash()))


@pytest.fixture(scope="module")
def two_intermediates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """root -> CA of deployment A, root -> CA of deployment B; B also mints A's identity."""
    from cryptography.hazmat.primitives import serialization

    base = tmp_path_factory.mktemp("intermediates")
    now = dt.datetime.now(dt.UTC)
    spec = KeySpec.EC_P256
    root_key = spec.generate()
    root_name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "enterprise root")])
    root_cert = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=400))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False)
        .sign(root_key, spec.signature_hash())
    )
    root = CertificateAuthority(root_key, root_cert)
    ccid_a, ccid_b = Ccid.generate(), Ccid.generate()
    ca_a = _intermediate(root, "deployment-a", ccid_a, now)
    ca_b = _intermediate(root, "deployment-b", ccid_b, now)
    folders: dict[str, Path] = {}
    for label, ca, component in [
        ("a-ccm", ca_a, CCM),
        ("a-cco", ca_a, CCO),
        ("b-forged-cco", ca_b, CCO),  # B's CA claims A's CCID
    ]:
        key = spec.generate()
        cert = ca.issue(
            Identity(ccid_a, component),
            key.public_key(),
            spec,
            DEFAULT_ORGANIZATION,
            LOOPBACK_HOSTS,
            now,
            30,
        )
        folder = write_folder(base / label / component.folder, component, cert, key, [root_cert])
        (folder / "chain.crt").write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
        folders[label] = folder
    return folders


def test_a_leaf_of_this_deployments_intermediate_is_accepted(
    two_intermediates: dict[str, Path],
) -> None:
    server = ComponentCredentials.from_folder(two_intermediates["a-ccm"])
    client = ComponentCredentials.from_folder(two_intermediates["a-cco"])
    assert server.chain_file is not None  # the chain.crt path of the contexts is used
    checked, server_error, client_error, seen = _handshake(server, client)
    assert server_error is None and client_error is None
    assert checked == Identity(server.identity.ccid, CCO)
    assert seen == Identity(server.identity.ccid, CCM)


def test_another_deployments_ca_cannot_mint_this_ccid(two_intermediates: dict[str, Path]) -> None:
    server = ComponentCredentials.from_folder(two_intermediates["a-ccm"])
    forged = ComponentCredentials.from_folder(two_intermediates["b-forged-cco"])
    assert forged.identity.ccid == server.identity.ccid  # same claim...
    checked, server_error, _, _ = _handshake(server, forged)
    assert server_error is None  # ...and a chain to the shared root...
    assert isinstance(checked, PeerRefused)  # ...but not from this deployment's CA
    assert checked.reason is RefusalReason.OTHER_DEPLOYMENT
    assert "not this deployment's" in checked.message


def test_a_connection_that_did_not_verify_its_peer_is_refused(alpha: Extracted) -> None:
    server = ComponentCredentials.from_folder(alpha.folder(CCM))
    port, _, thread = serve_once(server.server_context(), lambda tls: None)
    unverified = ComponentCredentials.from_folder(alpha.folder(CCO)).client_context(
        check_hostname=False
    )
    unverified.verify_mode = ssl.CERT_NONE
    tls, error = connect(unverified, port)
    assert tls is not None, error
    with pytest.raises(PeerRefused) as refused:
        server.peer_check(allowed={CCM}).verify(tls)
    tls.close()
    thread.join(20)
    assert refused.value.reason is RefusalReason.UNVERIFIED
