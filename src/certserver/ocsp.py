"""An OCSP responder (RFC 6960) for the deployment CAs: good, revoked or unknown, signed by
the CA itself, with the request's nonce echoed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from certserver.authority import CertificateAuthority
from certserver.revocation import Reason

#: How long a response may be cached by the asker.
RESPONSE_LIFETIME = dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class SerialStatus:
    known: bool
    revoked_at: dt.datetime | None = None
    reason: Reason | None = None


@dataclass(frozen=True, slots=True)
class Responder:
    """A CA that answers for its serials."""

    ca: CertificateAuthority
    status_of: Callable[[str], SerialStatus]  # serial as certserver writes it (hex)


def key_hash(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes:
    """The hash of a certificate's subjectPublicKey BIT STRING (an OCSP CertID's key hash)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(algorithm)
    digest.update(_bit_string_of(spki))
    return digest.finalize()


def name_hash(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes:
    """The hash of a certificate's DER subject (an OCSP CertID's name hash)."""
    digest = hashes.Hash(algorithm)
    digest.update(cert.subject.public_bytes())
    return digest.finalize()


def respond(
    request_der: bytes,
    find: Callable[[bytes, hashes.HashAlgorithm], Responder | None],
    now: dt.datetime,
) -> bytes:
    """The DER OCSP response to ``request_der``; ``find`` maps an issuer key hash to its
    responder. A request that does not parse is MALFORMED_REQUEST; an unknown issuer is
    UNAUTHORIZED (RFC 6960 §2.3)."""
    try:
        request = ocsp.load_der_ocsp_request(request_der)
        algorithm = request.hash_algorithm
        serial = request.serial_number
        issuer_key_hash = request.issuer_key_hash
        extensions = list(request.extensions)
    except (ValueError, TypeError, NotImplementedError, UnsupportedAlgorithm):
        # NotImplementedError: several certificates in one request (cryptography reads one)
        return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    responder = find(issuer_key_hash, algorithm)
    if responder is None or request.issuer_name_hash != name_hash(
        responder.ca.certificate, algorithm
    ):
        return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    found = responder.status_of(format(serial, "x"))
    if not found.known:
        status = ocsp.OCSPCertStatus.UNKNOWN
    elif found.revoked_at is not None:
        status = ocsp.OCSPCertStatus.REVOKED
    else:
        status = ocsp.OCSPCertStatus.GOOD
    reason = found.reason.flag if found.reason and found.reason is not Reason.UNSPECIFIED else None
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=request.issuer_name_hash,
        issuer_key_hash=issuer_key_hash,
        serial_number=serial,
        algorithm=algorithm,
        cert_status=status,
        this_update=now - dt.timedelta(minutes=5),
        next_update=now + RESPONSE_LIFETIME,
        revocation_time=found.revoked_at if status is ocsp.OCSPCertStatus.REVOKED else None,
        revocation_reason=reason if status is ocsp.OCSPCertStatus.REVOKED else None,
    )
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, responder.ca.certificate)
    for extension in extensions:
        if isinstance(extension.value, x509.OCSPNonce):
            builder = builder.add_extension(extension.value, critical=False)
    response = builder.sign(responder.ca.key, responder.ca.spec.signature_hash())
    return response.public_bytes(serialization.Encoding.DER)


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )


def _bit_string_of(spki_der: bytes) -> bytes:
    """The subjectPublicKey bits of a DER SubjectPublicKeyInfo (past the unused-bits byte)."""
    at = 0

    def header(position: int) -> tuple[int, int]:
        first = spki_der[position + 1]
        if first < 0x80:
            return position + 2, first
        count = first & 0x7F
        return position + 2 + count, int.from_bytes(spki_der[position + 2 : position + 2 + count])

    start, _size = header(at)  # the SPKI SEQUENCE
    algorithm_start, algorithm_size = header(start)  # AlgorithmIdentifier
    bits_at = algorithm_start + algorithm_size
    bits_start, bits_size = header(bits_at)  # BIT STRING
    return spki_der[bits_start + 1 : bits_start + bits_size]
