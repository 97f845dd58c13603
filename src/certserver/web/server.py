"""``certserver serve``: the app under uvicorn, HTTPS by default.

Without ``--tls-cert``/``--tls-key`` it uses a certificate certserver issues for itself:
self-signed, for localhost, 127.0.0.1 and the bound address, kept in
``$CERTSERVER_HOME/serve/`` (key 0600) and made again when it nears its end.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certserver.clock import utc_now
from certserver.config import Settings
from certserver.errors import FileProblem, InvalidInput
from certserver.files import create_secret_file, ensure_private_dir
from certserver.hosts import Host
from certserver.keys import to_pkcs8_pem
from certserver.package import fingerprint
from certserver.webcert.selfsigned import make_default

_RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Bind:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Bind:
        host, sep, port_text = text.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise InvalidInput(f"invalid --bind {text!r}: expected HOST:PORT")
        return cls(host, int(port_text))


def own_certificate(settings: Settings, bind: Bind) -> tuple[Path, Path, str]:
    """The self-issued certificate and key files (made if missing or ending), and the
    certificate's SHA-256 fingerprint, for clients to pin."""
    folder = settings.home / "serve"
    cert_file, key_file = folder / "server.crt", folder / "server.key"
    now = utc_now()
    names = ["localhost", "127.0.0.1"]
    if bind.host not in ("0.0.0.0", "::") and bind.host not in names:  # noqa: S104
        names.append(bind.host)
    if cert_file.exists() and key_file.exists():
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        covered = set(_san_names(cert))
        private = key_file.lstat().st_mode & 0o077 == 0 and key_file.is_file()
        fresh = cert.not_valid_after_utc - now > _RENEW_BEFORE
        if fresh and private and covered >= set(names):
            return cert_file, key_file, fingerprint(cert)
    cert, key = make_default([Host.parse(name) for name in names], now)
    ensure_private_dir(folder)
    for path in (cert_file, key_file):
        path.unlink(missing_ok=True)
    create_secret_file(key_file, to_pkcs8_pem(key))
    create_secret_file(cert_file, cert.public_bytes(Encoding.PEM))
    return cert_file, key_file, fingerprint(cert)


def _san_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in san.get_values_for_type(x509.DNSName)] + [
        str(v) for v in san.get_values_for_type(x509.IPAddress)
    ]


def tls_context(
    cert_file: Path, key_file: Path, client_ca: Path | None, component_anchors: bytes = b""
) -> Callable[[], ssl.SSLContext]:
    """HTTPS, TLS 1.2+. Client certificates are asked for (not required: tokens work too)
    and verified: those ``client_ca`` issued (credentials), and components' certificates
    under ``component_anchors`` (PEM; for self-renewal)."""

    def make() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(str(cert_file), str(key_file))
        except (OSError, ssl.SSLError) as exc:
            raise FileProblem(
                cert_file, f"cannot load the TLS certificate and key: {exc}"
            ) from None
        if client_ca is not None:
            try:
                context.load_verify_locations(cafile=str(client_ca))
            except (OSError, ssl.SSLError):
                raise FileProblem(client_ca, "cannot load it as client CA certificates") from None
            context.verify_mode = ssl.CERT_OPTIONAL
        if component_anchors.strip():
            context.load_verify_locations(cadata=component_anchors.decode("ascii"))
            context.verify_mode = ssl.CERT_OPTIONAL
        return context

    make()  # fail now, with a clear message, rather than inside uvicorn
    return make


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
