"""Mutual TLS between components: SSL contexts from a component folder, and the peer check.

A handshake proves only that the peer's chain verifies to the trust anchors. Who the peer
is comes from :class:`PeerCheck`: its SPIFFE ID must name this deployment's CCID and an
allowed component. That second step is what keeps two deployments apart when one
enterprise root signs both, so call it on every connection::

    creds = ComponentCredentials.from_folder(Path("/usr/local/osmosix/ssl/ccm"))
    server = creds.server_context()
    check = creds.peer_check(allowed={Component.CCO, Component.GUA})
    ...
    identity = check.verify(tls_socket)   # raises PeerRefused with the reason
"""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from cryptography import x509
from cryptography.x509.oid import NameOID

from certserver.access import AccessPolicy
from certserver.errors import (
    CertserverError,
    FileProblem,
    IdentityError,
    PeerRefused,
    RefusalReason,
)
from certserver.extensions import extension_of
from certserver.federation import read_links_json
from certserver.files import read_regular_file
from certserver.identity import Ccid, Component, Identity
from certserver.pem import ParseError, parse


def identity_of(cert: x509.Certificate) -> Identity:
    """The (CCID, component) in a certificate's single SPIFFE URI SAN."""
    try:
        extensions = cert.extensions
    except (ValueError, x509.DuplicateExtension):
        raise IdentityError("certificate's extensions do not parse") from None
    return identity_in(extensions)


def identity_in(extensions: x509.Extensions) -> Identity:
    """The identity in a certificate's or a CSR's extensions, or IdentityError saying why not."""
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise IdentityError("certificate has no subjectAltName, so no identity") from None
    except (ValueError, x509.DuplicateExtension):
        raise IdentityError("certificate's extensions do not parse") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise IdentityError(f"certificate has {len(uris)} URI SANs; an identity needs exactly one")
    return Identity.from_spiffe_id(uris[0])


_MAX_LINKS = 1 << 20
_NO_LINKS: Mapping[Ccid, frozenset[bytes]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PeerCheck:
    """Accepts a peer only with this deployment's CCID (or a linked one) and an allowed
    component.

    ``issuers`` (key identifiers of this deployment's CAs) also pins who issued the peer's
    certificate, so a CA of another deployment under the same root cannot mint a
    certificate that claims this CCID. ``linked`` maps each linked deployment's CCID to its
    issuers in the same way (federation: see :mod:`certserver.federation`).
    """

    ccid: Ccid
    allowed: frozenset[Component]
    issuers: frozenset[bytes] = frozenset()
    linked: Mapping[Ccid, frozenset[bytes]] = field(default_factory=lambda: _NO_LINKS)

    def verify(self, connection: ssl.SSLSocket | ssl.SSLObject) -> Identity:
        """The identity of the peer of a completed handshake, or :class:`PeerRefused`."""
        if connection.context.verify_mode is not ssl.CERT_REQUIRED:
            raise PeerRefused(
                RefusalReason.UNVERIFIED,
                "peer refused: this connection did not verify the peer's chain",
            )
        der = connection.getpeercert(binary_form=True)
        if not der:
            raise PeerRefused(RefusalReason.NO_CERTIFICATE, "peer sent no certificate")
        return self.verify_certificate(x509.load_der_x509_certificate(der))

    def verify_certificate(self, cert: x509.Certificate) -> Identity:
        """The identity in ``cert`` if it is acceptable here (its chain checked elsewhere)."""
        try:
            identity = identity_of(cert)
        except IdentityError as exc:
            raise PeerRefused(RefusalReason.NO_IDENTITY, f"peer refused: {exc}") from None
        if identity.ccid == self.ccid:
            pins, whose = self.issuers, "this deployment's"
        elif identity.ccid in self.linked:
            pins, whose = self.linked[identity.ccid], "the linked deployment's"
        else:
            linked = " or a linked one" if self.linked else ""
            raise PeerRefused(
                RefusalReason.OTHER_DEPLOYMENT,
                f"peer refused: {identity.spiffe_id} belongs to deployment {identity.ccid}, "
                f"not this deployment ({self.ccid}){linked}",
            )
        if pins and authority_key_id(cert) not in pins:
            raise PeerRefused(
                RefusalReason.OTHER_DEPLOYMENT,
                f"peer refused: {identity.spiffe_id} was issued by a CA that is not {whose}",
            )
        if identity.component not in self.allowed:
            allowed = ", ".join(sorted(c.folder for c in self.allowed)) or "none"
            raise PeerRefused(
                RefusalReason.COMPONENT_NOT_ALLOWED,
                f"peer refused: component {identity.component} is not allowed here "
                f"(allowed: {allowed})",
            )
        return identity

    def wrap(
        self,
        context: ssl.SSLContext,
        sock: socket.socket,
        *,
        server_side: bool,
        server_hostname: str | None = None,
    ) -> tuple[ssl.SSLSocket, Identity]:
        """Handshake on ``sock`` and check the peer: the TLS socket and the peer's identity,
        or :class:`PeerRefused` with the reason (unknown CA, expired, revoked, other
        deployment, component not allowed, ...). The socket is closed on a refusal.

        On the client side under TLS 1.3 the server decides about the client's certificate
        after the handshake: its refusal arrives as an ``ssl.SSLError`` on the first read,
        which :func:`refusal_of` turns into a reason (``refused-by-peer`` and the alert).
        """
        try:
            tls = context.wrap_socket(
                sock, server_side=server_side, server_hostname=server_hostname
            )
        except ssl.SSLError as exc:
            sock.close()
            raise refusal_of(exc) from None
        try:
            return tls, self.verify(tls)
        except PeerRefused:
            tls.close()
            raise


_VERIFY_CODES = {
    2: RefusalReason.UNKNOWN_CA,  # unable to get issuer certificate
    3: RefusalReason.CRL_PROBLEM,  # unable to get certificate CRL
    7: RefusalReason.UNKNOWN_CA,  # signature failure: a namesake CA signed it
    9: RefusalReason.NOT_YET_VALID,
    10: RefusalReason.EXPIRED,
    11: RefusalReason.CRL_PROBLEM,  # CRL not yet valid
    12: RefusalReason.CRL_PROBLEM,  # CRL has expired
    18: RefusalReason.UNKNOWN_CA,  # self-signed leaf
    19: RefusalReason.UNKNOWN_CA,  # self-signed certificate in chain
    20: RefusalReason.UNKNOWN_CA,  # unable to get local issuer certificate
    21: RefusalReason.UNKNOWN_CA,
    23: RefusalReason.REVOKED,
}


def refusal_of(exc: ssl.SSLError) -> PeerRefused:
    """Why a handshake (or, under TLS 1.3, a client's first read) failed: this side's
    verification of the peer, a peer that sent no certificate, or the peer's alert (then
    the peer refused *us*: ``refused-by-peer``, with its alert in the message)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = _VERIFY_CODES.get(exc.verify_code, RefusalReason.HANDSHAKE_FAILED)
        return PeerRefused(reason, f"peer refused: {exc.verify_message}")
    name = str(exc.reason or "")
    shown = name.lower().replace("_", " ") if name else type(exc).__name__
    if name == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return PeerRefused(RefusalReason.NO_CERTIFICATE, f"peer refused: {shown}")
    if "ALERT" in name:
        return PeerRefused(RefusalReason.REFUSED_BY_PEER, f"the peer refused this side: {shown}")
    return PeerRefused(RefusalReason.HANDSHAKE_FAILED, f"handshake failed: {shown}")


def authority_key_id(cert: x509.Certificate) -> bytes | None:
    aki = extension_of(cert, x509.AuthorityKeyIdentifier)
    return None if aki is None else aki.key_identifier


@dataclass(frozen=True, slots=True)
class ComponentCredentials:
    """One component's files, as extracted from a package or installed on its host."""

    identity: Identity
    cert_file: Path
    key_file: Path
    ca_file: Path
    chain_file: Path | None
    #: The key identifier of the CA that issued this component's certificate.
    issuer_key_id: bytes | None = None
    #: Linked deployments this component accepts (``links.json``): CCID -> issuer key ids.
    linked: Mapping[Ccid, frozenset[bytes]] = field(default_factory=lambda: _NO_LINKS)
    #: A CRL (PEM) of the issuing CA: peers whose certificate it lists are refused.
    crl_file: Path | None = None
    #: Key identifiers of this deployment's own CAs among the trusted ones (two while a CA
    #: rotation is under way): they may issue this deployment's identities too.
    deployment_cas: frozenset[bytes] = frozenset()

    @classmethod
    def from_folder(
        cls, folder: Path, component: Component | None = None, *, crl_file: Path | None = None
    ) -> ComponentCredentials:
        """Read ``folder`` (e.g. ``ssl/ccm``); the component comes from the files if not given.

        With ``crl_file``, every peer certificate is checked against that CRL, and a peer
        whose issuer has no CRL there is refused too.
        """
        component = component or _component_in(folder)
        cert_file = folder / component.cert_file
        try:
            cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        except OSError as exc:
            raise FileProblem(cert_file, f"cannot read: {exc.strerror}") from None
        except ValueError:
            raise FileProblem(cert_file, "not a PEM certificate") from None
        try:
            identity = identity_of(cert)
        except IdentityError as exc:
            raise FileProblem(cert_file, exc.message) from None
        if identity.component is not component:
            raise FileProblem(
                cert_file, f"certificate is for {identity.component}, not {component}"
            )
        chain = folder / component.chain_file if component.chain_file else None
        return cls(
            identity=identity,
            cert_file=cert_file,
            key_file=folder / component.key_file,
            ca_file=folder / component.ca_file,
            chain_file=chain if chain is not None and chain.exists() else None,
            issuer_key_id=authority_key_id(cert),
            linked=_links_in(folder, component),
            crl_file=crl_file,
            deployment_cas=_deployment_cas(
                identity.ccid, folder / component.ca_file, chain if chain else None
            ),
        )

    def peer_check(
        self,
        *,
        allowed: Collection[Component] | None = None,
        policy: AccessPolicy | None = None,
    ) -> PeerCheck:
        """The check for peers of this component: this deployment's CCID (or a linked one),
        the same issuing CA, and a component that ``allowed`` names, or else that
        ``policy`` (default :meth:`AccessPolicy.default`) lets call this component."""
        if allowed is None:
            allowed = (policy or AccessPolicy.default()).allowed_for(self.identity.component)
        issuers = frozenset({self.issuer_key_id}) if self.issuer_key_id else frozenset()
        return PeerCheck(
            self.identity.ccid, frozenset(allowed), issuers | self.deployment_cas, self.linked
        )

    def server_context(self) -> ssl.SSLContext:
        """TLS 1.2+, a client certificate required and verified against ``ca_file``."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._configure(context)
        return context

    def client_context(self, *, check_hostname: bool = True) -> ssl.SSLContext:
        """TLS 1.2+, the server verified against ``ca_file``; presents this component's cert.

        ``check_hostname=False`` authenticates the server by its identity alone (SPIFFE style);
        then :meth:`PeerCheck.verify` is the only check of who the server is.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = check_hostname
        self._configure(context)
        return context

    def _configure(self, context: ssl.SSLContext) -> None:
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        try:
            context.load_verify_locations(cafile=str(self.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise FileProblem(self.ca_file, f"cannot load trust anchors: {_reason(exc)}") from None
        if self.crl_file is not None:
            try:
                context.load_verify_locations(cafile=str(self.crl_file))
            except (OSError, ssl.SSLError) as exc:
                raise FileProblem(self.crl_file, f"cannot load the CRL: {_reason(exc)}") from None
            context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        self._load_chain(context)

    def _load_chain(self, context: ssl.SSLContext) -> None:
        if self.chain_file is None:
            self._load_pair(context, self.cert_file)
            return
        # ssl wants leaf and intermediates in one file; they are public, the key stays put.
        fd, combined = tempfile.mkstemp(suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(self.cert_file.read_bytes() + self.chain_file.read_bytes())
            self._load_pair(context, Path(combined))
        finally:
            Path(combined).unlink(missing_ok=True)

    def _load_pair(self, context: ssl.SSLContext, cert_file: Path) -> None:
        try:
            context.load_cert_chain(certfile=str(cert_file), keyfile=str(self.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise FileProblem(
                self.key_file, f"cannot load key and certificate: {_reason(exc)}"
            ) from None


def _deployment_cas(ccid: Ccid, *files: Path | None) -> frozenset[bytes]:
    """Subject key identifiers of the CA certificates in ``files`` whose subject names
    ``ccid`` (certserver's deployment CAs: ``OU=<ccid>``)."""
    found: set[bytes] = set()
    for path in files:
        if path is None or not path.is_file():
            continue
        try:
            certs = parse(path.read_bytes()).certificates
        except (ParseError, OSError):
            continue  # loading the context reports a damaged file
        for cert in certs:
            units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
            if ccid.value not in [unit.value for unit in units]:
                continue
            ski = extension_of(cert, x509.SubjectKeyIdentifier)
            if ski is not None:
                found.add(ski.digest)
    return frozenset(found)


def _links_in(folder: Path, component: Component) -> Mapping[Ccid, frozenset[bytes]]:
    if component.links_file is None:
        return _NO_LINKS
    path = folder / component.links_file
    if not os.path.lexists(path):
        return _NO_LINKS
    data = read_regular_file(path, _MAX_LINKS, "a links file")
    return MappingProxyType(read_links_json(data, str(path)))


def _component_in(folder: Path) -> Component:
    try:
        return Component.from_folder(folder.name)
    except CertserverError:
        pass
    found = [c for c in Component if (folder / c.cert_file).is_file()]
    if len(found) != 1:
        raise FileProblem(folder, "not a component folder (no single component certificate)")
    return found[0]


def _reason(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
