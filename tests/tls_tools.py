"""Python TLS peers on loopback, built only from certserver.mtls contexts."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certserver.errors import PeerRefused
from certserver.identity import Component
from certserver.keys import PrivateKey, to_pkcs8_pem
from certserver.mtls import ComponentCredentials, PeerCheck
from certserver.pem import certificates_pem


@dataclass
class ServerOutcome:
    """What the server side saw: the handshake error, or what its peer check returned."""

    handshake_error: str | None = None
    checked: object = None
    done: threading.Event = field(default_factory=threading.Event)


def serve_once(
    context: ssl.SSLContext, on_connection: Callable[[ssl.SSLSocket], object]
) -> tuple[int, ServerOutcome, threading.Thread]:
    """Accept one TLS connection on a free loopback port; run ``on_connection`` on it."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(15)
    port = listener.getsockname()[1]
    outcome = ServerOutcome()

    def run() -> None:
        try:
            raw, _ = listener.accept()
            raw.settimeout(15)
            try:
                with context.wrap_socket(raw, server_side=True) as tls:
                    try:
                        outcome.checked = on_connection(tls)
                    except Exception as exc:  # the peer check's refusal, reported to the test
                        outcome.checked = exc
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as exc:
                outcome.handshake_error = str(exc)
        finally:
            listener.close()
            outcome.done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return port, outcome, thread


def connect(context: ssl.SSLContext, port: int) -> tuple[ssl.SSLSocket | None, str | None]:
    """A client connection that has read the server's first bytes, or the error that stopped it."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=15)
    try:
        tls = context.wrap_socket(raw, server_hostname="localhost")
        tls.recv(2)  # under TLS 1.3 a refused client certificate shows up here
    except (ssl.SSLError, OSError) as exc:
        raw.close()
        return None, str(exc)
    return tls, None


def write_folder(
    folder: Path,
    component: Component,
    cert: x509.Certificate,
    key: PrivateKey,
    anchors: list[x509.Certificate],
) -> Path:
    """A component folder laid out like the package's, for certificates made in a test."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / component.cert_file).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / component.key_file).write_bytes(to_pkcs8_pem(key))
    (folder / component.ca_file).write_bytes(certificates_pem(anchors))
    return folder


def handshake(
    server: ComponentCredentials, client: ComponentCredentials, check: PeerCheck | None = None
) -> tuple[object, str | None, str | None, object]:
    """One loopback connection from ``client`` to ``server``: (the server's check result,
    the server's handshake error, the client's error, the client's view of the server)."""
    check = check or server.peer_check(allowed=set(Component))
    port, outcome, thread = serve_once(server.server_context(), check.verify)
    tls, client_error = connect(client.client_context(), port)
    server_identity: object = None
    if tls is not None:
        try:
            server_identity = client.peer_check(allowed={Component.CCM}).verify(tls)
        except PeerRefused as exc:
            server_identity = exc
        tls.close()
    thread.join(20)
    assert outcome.done.is_set()
    return outcome.checked, outcome.handshake_error, client_error, server_identity
