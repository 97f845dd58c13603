"""Per-service access policy and the reasons a peer is refused, over real handshakes."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certserver.access import AccessPolicy
from certserver.authority import CertificateAuthority
from certserver.errors import FileProblem, PeerRefused, RefusalReason
from certserver.identity import Ccid, Component, DeploymentName, Identity
from certserver.keys import KeySpec
from certserver.mtls import ComponentCredentials, PeerCheck
from certserver.profiles import DEFAULT_ORGANIZATION

from .conftest import LOOPBACK_HOSTS, Extracted
from .openssl_tools import s_client
from .tls_tools import write_folder

CCM, CCO, GUA, MON, ESB, BROKER = (
    Component.CCM,
    Component.CCO,
    Component.GUA,
    Component.MONITOR,
    Component.ESB,
    Component.ESB_BROKER,
)


def serve_checked(
    server: ComponentCredentials, check: PeerCheck
) -> tuple[int, dict[str, object], threading.Thread]:
    """One connection on loopback, handshake and check through ``PeerCheck.wrap``."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(15)
    result: dict[str, object] = {}
    context = server.server_context()

    def run() -> None:
        try:
            raw, _ = listener.accept()
            raw.settimeout(15)
            try:
                tls, identity = check.wrap(context, raw, server_side=True)
            except PeerRefused as refused:
                result["refused"] = refused
                return
            result["identity"] = identity
            tls.sendall(b"ok")
            tls.close()
        finally:
            listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener.getsockname()[1], result, thread


def call(server: ComponentCredentials, client: ComponentCredentials, check: PeerCheck) -> object:
    """What the server's check made of ``client``: an Identity or a PeerRefused."""
    port, result, thread = serve_checked(server, check)
    raw = socket.create_connection(("127.0.0.1", port), timeout=15)
    try:
        tls = client.client_context().wrap_socket(raw, server_hostname="localhost")
        tls.recv(2)
        tls.close()
    except OSError:
        raw.close()
    thread.join(20)
    return result.get("identity") or result.get("refused")


def test_the_default_policy() -> None:
    policy = AccessPolicy.default()
    assert policy.allowed_for(CCM) == {CCO, GUA, MON, ESB}
    assert policy.allowed_for(BROKER) == set(Component)
    assert policy.allowed_for(CCO) == {CCM}


def test_a_policy_file_replaces_the_services_it_names(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[accept]\nccm = ["cco"]\nmon = ["*"]\n')
    policy = AccessPolicy.from_file(path)
    assert policy.allowed_for(CCM) == {CCO}
    assert policy.allowed_for(MON) == set(Component)
    assert policy.allowed_for(BROKER) == set(Component)  # untouched


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[accept\n", "not a TOML policy"),
        ('[accept]\nccm = ["nobody"]\n', "unknown component 'nobody'"),
        ('[accept]\nwho = ["cco"]\n', "unknown component 'who'"),
        ('[accept]\nccm = "cco"\n', "must be a list of components"),
        ('[allow]\nccm = ["cco"]\n', "unknown section 'allow'"),
        ('[accept]\nccm = ["*", "bogus"]\n', "unknown component 'bogus'"),
        ("", r"has no \[accept\] table"),
    ],
)
def test_a_bad_policy_file_is_refused_with_its_name(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(FileProblem, match=problem) as caught:
        AccessPolicy.from_file(path)
    assert str(path) in caught.value.message


def test_allowed_components_are_accepted_and_others_of_the_deployment_refused(
    alpha: Extracted,
) -> None:
    server = ComponentCredentials.from_folder(alpha.folder(CCM))
    check = server.peer_check()  # the default policy: CCM accepts CCO, GUA, MON, ESB
    ccid = alpha.result.deployment.ccid
    for component in (CCO, GUA):
        client = ComponentCredentials.from_folder(alpha.folder(component))
        assert call(server, client, check) == Identity(ccid, component)
    broker = ComponentCredentials.from_folder(alpha.folder(BROKER))
    refused = call(server, broker, check)
    assert isinstance(refused, PeerRefused)
    assert refused.reason is RefusalReason.COMPONENT_NOT_ALLOWED
    # and a policy that says otherwise is followed
    narrowed = server.peer_check(policy=AccessPolicy.default().replacing(CCM, {BROKER}))
    assert call(server, broker, narrowed) == Identity(ccid, BROKER)
    refused = call(server, ComponentCredentials.from_folder(alpha.folder(CCO)), narrowed)
    assert isinstance(refused, PeerRefused)
    assert refused.reason is RefusalReason.COMPONENT_NOT_ALLOWED


def test_a_component_of_another_deployment_is_refused_as_unknown_ca(
    alpha: Extracted, bravo: Extracted
) -> None:
    server = ComponentCredentials.from_folder(alpha.folder(CCM))
    foreign = ComponentCredentials.from_folder(bravo.folder(CCO))
    foreign = ComponentCredentials(
        foreign.identity, foreign.cert_file, foreign.key_file, alpha.ca(CCO), None
    )  # it trusts alpha's CA, so only the server's verification is under test
    refused = call(server, foreign, server.peer_check())
    assert isinstance(refused, PeerRefused)
    assert refused.reason is RefusalReason.UNKNOWN_CA


# -- expired, revoked, TLS 1.1: certificates made in the test, under its own CA ------------


@pytest.fixture(scope="module")
def own_ca(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("own")
    now = dt.datetime.now(dt.UTC)
    spec = KeySpec.EC_P256
    ccid = Ccid.generate()
    ca = CertificateAuthority.create(DeploymentName("own"), ccid, DEFAULT_ORGANIZATION, spec, now)
    folders: dict[str, object] = {"ca": ca, "ccid": ccid}
    for label, component, start in [
        ("ccm", CCM, now),
        ("cco", CCO, now),
        ("expired-cco", CCO, now - dt.timedelta(days=10)),
        ("future-cco", CCO, now + dt.timedelta(days=3)),
    ]:
        key = spec.generate()
        cert = ca.issue(
            Identity(ccid, component), key.public_key(), spec, DEFAULT_ORGANIZATION,
            LOOPBACK_HOSTS, start, 2,
        )  # fmt: skip
        folders[label] = write_folder(
            root / label / component.folder, component, cert, key, [ca.certificate]
        )
    return folders


def _creds(own_ca: dict[str, object], label: str) -> ComponentCredentials:
    folder = own_ca[label]
    assert isinstance(folder, Path)
    return ComponentCredentials.from_folder(folder)


@pytest.mark.parametrize(
    ("label", "reason"),
    [("expired-cco", RefusalReason.EXPIRED), ("future-cco", RefusalReason.NOT_YET_VALID)],
)
def test_a_certificate_out_of_its_validity_is_refused_with_the_reason(
    own_ca: dict[str, object], label: str, reason: RefusalReason
) -> None:
    server = _creds(own_ca, "ccm")
    assert call(server, _creds(own_ca, "cco"), server.peer_check()) == Identity(
        own_ca["ccid"],  # type: ignore[arg-type]
        CCO,
    )
    refused = call(server, _creds(own_ca, label), server.peer_check())
    assert isinstance(refused, PeerRefused)
    assert refused.reason is reason


def _crl(ca: CertificateAuthority, revoked: list[x509.Certificate], path: Path) -> Path:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now - dt.timedelta(minutes=1))
        .next_update(now + dt.timedelta(days=1))
    )
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(now - dt.timedelta(minutes=1))
            .build()
        )
    crl = builder.sign(ca.key, hashes.SHA256())
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return path


def test_a_revoked_peer_is_refused_once_a_crl_is_configured(
    own_ca: dict[str, object], tmp_path: Path
) -> None:
    ca = own_ca["ca"]
    assert isinstance(ca, CertificateAuthority)
    cco = _creds(own_ca, "cco")
    leaf = x509.load_pem_x509_certificate(cco.cert_file.read_bytes())
    folder = own_ca["ccm"]
    assert isinstance(folder, Path)
    empty = ComponentCredentials.from_folder(folder, crl_file=_crl(ca, [], tmp_path / "e.pem"))
    assert call(empty, cco, empty.peer_check()) == Identity(own_ca["ccid"], CCO)  # type: ignore[arg-type]
    listing = ComponentCredentials.from_folder(
        folder, crl_file=_crl(ca, [leaf], tmp_path / "r.pem")
    )
    refused = call(listing, cco, listing.peer_check())
    assert isinstance(refused, PeerRefused)
    assert refused.reason is RefusalReason.REVOKED


def test_a_crl_file_that_is_not_one_is_refused(own_ca: dict[str, object], tmp_path: Path) -> None:
    folder = own_ca["ccm"]
    assert isinstance(folder, Path)
    bad = tmp_path / "crl.pem"
    bad.write_text("not a crl\n")
    creds = ComponentCredentials.from_folder(folder, crl_file=bad)
    with pytest.raises(FileProblem, match="cannot load the CRL"):
        creds.server_context()


@pytest.mark.parametrize(("tls", "accepted"), [("tls1_2", True), ("tls1_1", False)])
def test_tls_1_1_is_refused_and_1_2_accepted(
    own_ca: dict[str, object], tls: str, accepted: bool
) -> None:
    server = _creds(own_ca, "ccm")
    cco = _creds(own_ca, "cco")
    port, result, thread = serve_checked(server, server.peer_check())
    run = s_client(port, cco.ca_file, tls, cco.cert_file, cco.key_file)
    thread.join(20)
    if accepted:
        assert result.get("identity") == Identity(own_ca["ccid"], CCO)  # type: ignore[arg-type]
    else:
        refused = result.get("refused")
        assert isinstance(refused, PeerRefused)
        assert refused.reason is RefusalReason.HANDSHAKE_FAILED
        assert "unsupported protocol" in refused.message
        assert run.returncode != 0


def test_a_client_without_certificate_is_refused_as_such(own_ca: dict[str, object]) -> None:
    import ssl

    server = _creds(own_ca, "ccm")
    port, result, thread = serve_checked(server, server.peer_check())
    context = ssl.create_default_context(cafile=str(server.ca_file))
    raw = socket.create_connection(("127.0.0.1", port), timeout=15)
    try:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.recv(2)
    except OSError:
        pass
    thread.join(20)
    refused = result.get("refused")
    assert isinstance(refused, PeerRefused)
    assert refused.reason is RefusalReason.NO_CERTIFICATE


def test_an_expired_crl_refuses_with_its_own_reason(
    own_ca: dict[str, object], tmp_path: Path
) -> None:
    ca = own_ca["ca"]
    assert isinstance(ca, CertificateAuthority)
    now = dt.datetime.now(dt.UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now - dt.timedelta(days=3))
        .next_update(now - dt.timedelta(days=1))
        .sign(ca.key, hashes.SHA256())
    )
    path = tmp_path / "old.pem"
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    folder = own_ca["ccm"]
    assert isinstance(folder, Path)
    server = ComponentCredentials.from_folder(folder, crl_file=path)
    refused = call(server, _creds(own_ca, "cco"), server.peer_check())
    assert isinstance(refused, PeerRefused)
    assert refused.reason is RefusalReason.CRL_PROBLEM


def test_the_client_side_learns_that_the_server_refused_it(own_ca: dict[str, object]) -> None:
    from certserver.mtls import refusal_of

    server = _creds(own_ca, "ccm")
    port, result, thread = serve_checked(server, server.peer_check())
    expired = _creds(own_ca, "expired-cco")  # the server refuses it; the client hears why
    raw = socket.create_connection(("127.0.0.1", port), timeout=15)
    tls, seen = expired.peer_check(allowed={CCM}).wrap(
        expired.client_context(), raw, server_side=False, server_hostname="localhost"
    )
    assert seen.component is CCM
    with pytest.raises(ssl.SSLError) as caught:  # TLS 1.3: the refusal comes on the first read
        tls.recv(2)
    tls.close()
    thread.join(20)
    assert isinstance(result.get("refused"), PeerRefused)
    assert refusal_of(caught.value).reason is RefusalReason.REFUSED_BY_PEER
    assert "expired" in refusal_of(caught.value).message
