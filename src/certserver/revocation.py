"""Revocation: reasons, and a deployment CA's CRL built in one pass.

Adding entries to cryptography's CRL builder one at a time copies the list each time
(quadratic); the builder is given every entry at once instead.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from certserver.authority import CertificateAuthority
from certserver.errors import InvalidInput
from certserver.keys import KeySpec, PrivateKey

#: How long a CRL is valid; it is made again before (and after every revocation).
CRL_LIFETIME = dt.timedelta(days=7)


class Reason(enum.StrEnum):
    """RFC 5280 revocation reasons (certificateHold is left out: a hold is not a revocation)."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "key-compromise"
    CA_COMPROMISE = "ca-compromise"
    AFFILIATION_CHANGED = "affiliation-changed"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessation-of-operation"
    PRIVILEGE_WITHDRAWN = "privilege-withdrawn"

    @classmethod
    def parse(cls, text: str) -> Reason:
        try:
            return cls(text.strip().lower())
        except ValueError:
            names = ", ".join(reason.value for reason in cls)
            raise InvalidInput(f"unknown reason {text!r}: expected one of {names}") from None

    @property
    def flag(self) -> x509.ReasonFlags:
        return getattr(x509.ReasonFlags, self.name.lower())  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Revoked:
    serial: int
    revoked_at: dt.datetime
    reason: Reason


def build_crl(
    ca: CertificateAuthority,
    revoked: Sequence[Revoked],
    number: int,
    now: dt.datetime,
    lifetime: dt.timedelta = CRL_LIFETIME,
) -> x509.CertificateRevocationList:
    """The CA's CRL listing ``revoked``, numbered ``number``, valid from now for ``lifetime``.

    The TBSCertList is encoded here, in one pass over the entries (cryptography's builder
    makes a Python object per entry and takes seconds for 100,000); the frame (issuer, the
    signature algorithm, the extensions) comes from a one-entry CRL that cryptography
    builds, so only the entry list is DER written by hand, and the result is parsed and its
    signature checked before it is returned.
    """
    this_update = now - dt.timedelta(minutes=5)
    frame = _frame(ca, this_update, now + lifetime, number)
    tbs = _tbs_with_entries(frame.tbs_certlist_bytes, revoked)
    signature = _sign(ca, tbs)
    algorithm = _algorithm_identifier(frame.public_bytes(serialization.Encoding.DER))
    der = _tlv(0x30, tbs + algorithm + _tlv(0x03, b"\x00" + signature))
    crl = x509.load_der_x509_crl(der)
    if not crl.is_signature_valid(ca.key.public_key()):  # pragma: no cover - a bug, not input
        raise AssertionError("the CRL just made does not verify")
    return crl


_FRAME_KEYS: dict[KeySpec, PrivateKey] = {}


def _frame_key(spec: KeySpec) -> PrivateKey:
    """A throwaway key of the CA's kind: the frame needs the CA's signature algorithm, not
    its signature (the CA never signs a CRL that is not the real one)."""
    if spec not in _FRAME_KEYS:
        _FRAME_KEYS[spec] = spec.generate()
    return _FRAME_KEYS[spec]


def _frame(
    ca: CertificateAuthority, this_update: dt.datetime, next_update: dt.datetime, number: int
) -> x509.CertificateRevocationList:
    """A CRL with one placeholder entry, whose TBS gives everything but the entries (signed
    by a throwaway key: only its algorithm identifier is used)."""
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    placeholder = (
        x509.RevokedCertificateBuilder().serial_number(1).revocation_date(this_update).build()
    )
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
        .add_extension(x509.CRLNumber(number), False)
        .add_revoked_certificate(placeholder)
        .sign(_frame_key(ca.spec), ca.spec.signature_hash())
    )


def _tbs_with_entries(frame_tbs: bytes, revoked: Sequence[Revoked]) -> bytes:
    """The frame's TBSCertList with its placeholder entry list replaced by ``revoked``."""
    ((_tag, value),) = _children_raw(frame_tbs)
    body = _children(value)
    # version, signature, issuer, thisUpdate, nextUpdate, revokedCertificates, [0] extensions
    assert len(body) == 7 and body[5][0] == 0x30, "unexpected TBSCertList"
    times: dict[dt.datetime, bytes] = {}
    entries = bytearray()
    for item in revoked:
        when = times.get(item.revoked_at)
        if when is None:
            when = times[item.revoked_at] = _time(item.revoked_at)
        entry = _integer(item.serial) + when
        if item.reason is not Reason.UNSPECIFIED:
            entry += _REASON_EXTENSIONS[item.reason]
        entries += _tlv(0x30, entry)
    parts = [raw for _tag, raw in body]
    parts[5] = _tlv(0x30, bytes(entries)) if revoked else b""  # no list when empty
    return _tlv(0x30, b"".join(parts))


def _sign(ca: CertificateAuthority, data: bytes) -> bytes:
    hash_ = ca.spec.signature_hash()
    if isinstance(ca.key, rsa.RSAPrivateKey):
        return ca.key.sign(data, padding.PKCS1v15(), hash_)
    return ca.key.sign(data, ec.ECDSA(hash_))


def _algorithm_identifier(crl_der: bytes) -> bytes:
    """The signatureAlgorithm of a CertificateList, as encoded."""
    ((_tag, outer),) = _children_raw(crl_der)
    return _children(outer)[1][1]


# -- a little DER: enough to write entries and to walk the frame ---------------------------


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _length(len(value)) + value


def _integer(value: int) -> bytes:
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)
    return _tlv(0x02, raw)


def _time(moment: dt.datetime) -> bytes:
    moment = moment.astimezone(dt.UTC)
    if 1950 <= moment.year < 2050:  # RFC 5280: UTCTime until 2049
        return _tlv(0x17, moment.strftime("%y%m%d%H%M%SZ").encode())
    return _tlv(0x18, moment.strftime("%Y%m%d%H%M%SZ").encode())


def _reason_extensions(reason: Reason) -> bytes:
    code = {
        Reason.KEY_COMPROMISE: 1,
        Reason.CA_COMPROMISE: 2,
        Reason.AFFILIATION_CHANGED: 3,
        Reason.SUPERSEDED: 4,
        Reason.CESSATION_OF_OPERATION: 5,
        Reason.PRIVILEGE_WITHDRAWN: 9,
    }[reason]
    oid = _tlv(0x06, bytes([0x55, 0x1D, 0x15]))  # 2.5.29.21 cRLReason
    extension = _tlv(0x30, oid + _tlv(0x04, _tlv(0x0A, bytes([code]))))
    return _tlv(0x30, extension)


_REASON_EXTENSIONS = {r: _reason_extensions(r) for r in Reason if r is not Reason.UNSPECIFIED}


def _children_raw(data: bytes) -> list[tuple[int, bytes]]:
    """Top-level TLVs of ``data``: (tag, the value's bytes)."""
    out = []
    at = 0
    while at < len(data):
        tag, start, end = _header(data, at)
        out.append((tag, data[start:end]))
        at = end
    return out


def _children(sequence_value: bytes) -> list[tuple[int, bytes]]:
    """Top-level TLVs inside a SEQUENCE's value: (tag, the whole TLV's bytes)."""
    out = []
    at = 0
    while at < len(sequence_value):
        tag, _start, end = _header(sequence_value, at)
        out.append((tag, sequence_value[at:end]))
        at = end
    return out


def _header(data: bytes, at: int) -> tuple[int, int, int]:
    tag = data[at]
    first = data[at + 1]
    if first < 0x80:
        return tag, at + 2, at + 2 + first
    count = first & 0x7F
    size = int.from_bytes(data[at + 2 : at + 2 + count], "big")
    start = at + 2 + count
    return tag, start, start + size
