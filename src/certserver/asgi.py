"""An ASGI middleware that requires a verified peer of this deployment, and the server glue
that gives it the peer's certificate (uvicorn, with the component's own TLS context).

::

    creds = ComponentCredentials.from_folder(Path("/usr/local/osmosix/ssl/ccm"))
    app = PeerIdentityMiddleware(app, creds.peer_check())   # CCO, GUA, Monitor, ESB
    uvicorn.Server(uvicorn_config(app, creds, port=8443)).run()

The handshake verifies the peer's chain (the component's ``ca.crt``); the middleware then
checks the identity in the certificate (:class:`certserver.mtls.PeerCheck`), puts it on the
request as ``scope["state"]["peer"]`` and answers 403 to anything else. A configured front
end (the trusted web server) may pass the end user in a header; from anyone else that
header is stripped and logged, never believed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from certserver.errors import CertserverError, PeerRefused, RefusalReason
from certserver.identity import Component, Identity
from certserver.mtls import ComponentCredentials, PeerCheck, identity_of

if TYPE_CHECKING:
    import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_USER_HEADER = "x-remote-user"
log = logging.getLogger("certserver.asgi")


@dataclass(frozen=True, slots=True)
class TrustedFrontEnd:
    """The web server in front whose word on the end user is believed: known by the identity
    in its client certificate, or by that certificate's SHA-256 fingerprint (hex)."""

    identity: Identity | None = None
    fingerprint_sha256: str | None = None

    def __post_init__(self) -> None:
        if (self.identity is None) == (self.fingerprint_sha256 is None):
            raise ValueError("a trusted front end is known by an identity or a fingerprint")

    def matches(self, cert: x509.Certificate, identity: Identity | None) -> bool:
        if self.fingerprint_sha256 is not None:
            wanted = self.fingerprint_sha256.lower().replace(":", "")
            return cert.fingerprint(hashes.SHA256()).hex() == wanted
        return identity is not None and identity == self.identity


class PeerIdentityMiddleware:
    """Lets through only requests whose TLS peer passes ``check`` (or is a trusted front
    end); sets ``scope["state"]["peer"]`` (an :class:`Identity`, or None for a front end
    known only by fingerprint) and ``scope["state"]["remote_user"]``."""

    def __init__(
        self,
        app: ASGIApp,
        check: PeerCheck,
        *,
        front_ends: Collection[TrustedFrontEnd] = (),
        user_header: str = DEFAULT_USER_HEADER,
    ) -> None:
        self.app = app
        self.check = check
        self.front_ends = tuple(front_ends)
        self.user_header = user_header.lower().replace("_", "-").encode("latin-1")

    def _is_user_header(self, name: bytes) -> bool:
        """The user header, also spelled with underscores (which some gateways fold)."""
        return name.lower().replace(b"_", b"-") == self.user_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            cert = peer_certificate(scope)
            identity, front_end = self._who(cert)
        except PeerRefused as refused:
            log.warning("refused %s: %s", _client(scope), refused.message)
            await _forbid(scope, send, refused)
            return
        headers = list(scope.get("headers", []))
        users = [value for name, value in headers if self._is_user_header(name)]
        if users and (not front_end or len(users) > 1):
            log.warning(
                "stripped %s from %s (%s): %s",
                self.user_header.decode(),
                identity.spiffe_id if identity else "a front end",
                _client(scope),
                "sent more than once" if front_end else "only a trusted front end may name it",
            )
        if users:
            headers = [(n, v) for n, v in headers if not self._is_user_header(n)]
        scope = dict(scope, headers=headers)
        state = dict(scope.get("state") or {})
        state["peer"] = identity
        state["remote_user"] = (
            users[0].decode("utf-8", "replace") if front_end and len(users) == 1 else None
        )
        scope["state"] = state
        await self.app(scope, receive, send)

    def _who(self, cert: x509.Certificate) -> tuple[Identity | None, bool]:
        """The peer's identity, and whether it is a trusted front end.

        A front end known by its identity must first pass the same checks as any peer
        (this deployment's CCID, or a linked one, issued by its CAs), whatever the policy
        says of its component; one known by fingerprint is the exact certificate.
        """
        for front in self.front_ends:
            if front.fingerprint_sha256 is not None and front.matches(cert, None):
                try:
                    return identity_of(cert), True
                except CertserverError:
                    return None, True
        if any(front.identity is not None for front in self.front_ends):
            anyone = dataclasses.replace(self.check, allowed=frozenset(Component))
            try:
                identity = anyone.verify_certificate(cert)
            except PeerRefused:
                identity = None
            if identity is not None and any(f.matches(cert, identity) for f in self.front_ends):
                return identity, True
        return self.check.verify_certificate(cert), False


def peer_certificate(scope: Scope) -> x509.Certificate:
    """The client certificate of the request's TLS connection (ASGI TLS extension), which
    the server verified in the handshake; PeerRefused when there is none."""
    tls = (scope.get("extensions") or {}).get("tls")
    if not tls:
        raise PeerRefused(RefusalReason.UNVERIFIED, "peer refused: not a TLS connection")
    chain = tls.get("client_cert_chain") or []
    if not chain:
        raise PeerRefused(RefusalReason.NO_CERTIFICATE, "peer sent no certificate")
    try:
        return x509.load_pem_x509_certificate(chain[0].encode("ascii"))
    except ValueError:
        raise PeerRefused(RefusalReason.NO_IDENTITY, "peer certificate does not parse") from None


def tls_extension(ssl_object: ssl.SSLObject) -> dict[str, Any]:
    """The ASGI TLS extension (version 0.2) of a connection whose handshake is done."""
    der = ssl_object.getpeercert(binary_form=True)
    chain = []
    if der:
        chain.append(x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode())
    cipher = ssl_object.cipher()
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": None,
        "certserver.cipher": cipher[0] if cipher else None,
    }


_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


async def _forbid(scope: Scope, send: Send, refused: PeerRefused) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps(
        {"title": "Forbidden", "status": 403, "reason": refused.reason, "detail": refused.message}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "unknown address"


def uvicorn_config(
    app: ASGIApp,
    credentials: ComponentCredentials,
    *,
    host: str = "127.0.0.1",
    port: int = 8443,
    **options: Any,
) -> uvicorn.Config:
    """A uvicorn configuration serving ``app`` with the component's server context (TLS
    1.2+, client certificate required) and the TLS extension on every request's scope."""
    return uvicorn_tls_config(app, credentials.server_context, host=host, port=port, **options)


def uvicorn_tls_config(
    app: Any,
    make_context: Callable[[], ssl.SSLContext],
    *,
    host: str,
    port: int,
    **options: Any,
) -> uvicorn.Config:
    """uvicorn with the TLS context ``make_context`` makes, and the ASGI TLS extension (the
    peer's certificate) on every HTTP and WebSocket scope."""
    import uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TlsH11Protocol(H11Protocol):
        """uvicorn's h11 protocol, adding ``scope["extensions"]["tls"]`` (also for the
        WebSocket connections it upgrades to)."""

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is None:
                return
            extension = tls_extension(ssl_object)
            self.app = _with_tls(self.app, extension)
            base = self.ws_protocol_class
            if base is not None:

                class TlsWebSocket(base):  # type: ignore[misc,valid-type]
                    def __init__(self, *args: Any, **kwargs: Any) -> None:
                        super().__init__(*args, **kwargs)
                        inner: Any = getattr(self, "app")  # noqa: B009 - untyped base
                        setattr(self, "app", _with_tls(inner, extension))  # noqa: B010

                self.ws_protocol_class = TlsWebSocket

    options.pop("http", None)  # the protocol is what provides the peer's certificate
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=TlsH11Protocol,
        ssl_context_factory=lambda _config, _default: make_context(),
        **options,
    )


def _with_tls(app: Any, extension: dict[str, Any]) -> ASGIApp:
    async def with_tls(scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("extensions", {})["tls"] = extension
        await app(scope, receive, send)

    return with_tls
