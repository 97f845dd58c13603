"""What a certificate, key, CSR or package holds, as plain data for a person or a script."""

from __future__ import annotations

import datetime as dt
import warnings
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from certserver.archive import open_package
from certserver.clock import days_left, iso
from certserver.errors import CertserverError, FileProblem
from certserver.federation import read_links_json
from certserver.keys import describe, public_key_sha256
from certserver.mtls import identity_in
from certserver.package import fingerprint, serial_hex
from certserver.pem import ParseError, parse

Report = dict[str, Any]


_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}
_KEY_USAGES = {
    "digital_signature": "digitalSignature",
    "content_commitment": "nonRepudiation",
    "key_encipherment": "keyEncipherment",
    "data_encipherment": "dataEncipherment",
    "key_agreement": "keyAgreement",
    "key_cert_sign": "keyCertSign",
    "crl_sign": "cRLSign",
}

_AGREEMENT_ONLY = {"encipher_only": "encipherOnly", "decipher_only": "decipherOnly"}


def inspect_bytes(
    data: bytes, source: str, now: dt.datetime, *, passphrase: bytes | None = None
) -> list[Report]:
    """Describe everything in ``data``; raises FileProblem naming ``source`` when unreadable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. cryptography on a zero serial: not for stderr
        try:
            return _inspect(data, source, now, in_package=False, passphrase=passphrase)
        except CertserverError:
            raise
        except UnsupportedAlgorithm:
            raise FileProblem(source, "uses an algorithm certserver does not support") from None
        except RecursionError:
            raise FileProblem(source, "is nested too deeply to read") from None
        except (ValueError, TypeError, NotImplementedError, RuntimeError):
            raise FileProblem(source, "is damaged (a field does not parse)") from None


def _inspect(
    data: bytes,
    source: str,
    now: dt.datetime,
    *,
    in_package: bool,
    passphrase: bytes | None = None,
) -> list[Report]:
    if data.startswith(b"PK\x03\x04"):
        if in_package:
            return [{"kind": "nested-zip"}]  # a package never holds one; not opened
        return [_package(data, source, now)]
    try:
        parsed = parse(data, passphrase=passphrase)
    except ParseError as exc:
        raise FileProblem(source, str(exc)) from None
    reports: list[Report] = [certificate(cert, now) for cert in parsed.certificates]
    reports += [csr(request) for request in parsed.csrs]
    reports += [private_key(key) for key in parsed.private_keys]
    reports += [{"kind": "encrypted-private-key"} for _ in range(parsed.encrypted_keys)]
    reports += [public_key(key) for key in parsed.public_keys]
    for report in reports:
        report["encoding"] = parsed.encoding
    return reports


def certificate(cert: x509.Certificate, now: dt.datetime) -> Report:
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < not_before:
        status = "not yet valid"
    elif now > not_after:
        status = "expired"
    else:
        status = "valid"
    public = cert.public_key()
    return {
        "kind": "certificate",
        "subject": name_text(cert.subject),
        "issuer": name_text(cert.issuer),
        "self_signed": is_self_signed(cert),
        "serial": serial_hex(cert),
        "serial_bits": cert.serial_number.bit_length(),
        "not_before": iso(not_before),
        "not_after": iso(not_after),
        "days_left": days_left(not_after, now),
        "status": status,
        "key": str(describe(public)),
        "signature_algorithm": _signature_name(cert),
        "fingerprint_sha256": fingerprint(cert),
        "fingerprint_sha1": cert.fingerprint(hashes.SHA1()).hex(),  # noqa: S303 - display only
        "sans": _sans(cert.extensions),
        "identity": _identity(cert.extensions),
        "extensions": [_extension(ext) for ext in cert.extensions],
    }


def csr(request: x509.CertificateSigningRequest) -> Report:
    return {
        "kind": "csr",
        "subject": name_text(request.subject),
        "signature_valid": request.is_signature_valid,
        "key": str(describe(request.public_key())),
        "sans": _sans(request.extensions),
        "identity": _identity(request.extensions),
        "extensions": [_extension(ext) for ext in request.extensions],
    }


def private_key(key: object) -> Report:
    public = key.public_key()  # type: ignore[attr-defined]
    return {
        "kind": "private-key",
        "key": str(describe(key)),
        "public_key_sha256": public_key_sha256(public),
    }


def public_key(key: object) -> Report:
    return {
        "kind": "public-key",
        "key": str(describe(key)),
        "public_key_sha256": public_key_sha256(key),
    }


def _package(data: bytes, source: str, now: dt.datetime) -> Report:
    opened = open_package(data, source)
    problems = list(opened.problems)
    members: list[Report] = []
    for path, member in sorted(opened.members.items()):
        if path.endswith("/links.json"):  # federation: the linked deployments it accepts
            try:
                linked = read_links_json(member.data, f"{source}:{path}")
            except CertserverError as exc:
                problems.append(str(exc))
                continue
            found: list[Report] = [
                {"kind": "links", "ccids": sorted(ccid.value for ccid in linked)}
            ]
            members.append({"path": path, "mode": f"{member.mode:04o}", "contents": found})
            continue
        try:
            found = _inspect(member.data, f"{source}:{path}", now, in_package=True)
        except CertserverError as exc:
            problems.append(str(exc))
            continue
        members.append({"path": path, "mode": f"{member.mode:04o}", "contents": found})
    manifest = opened.manifest
    return {
        "kind": "package",
        "deployment": opened.name.value,
        "ccid": opened.ccid.value,
        "created_at": manifest.get("created_at"),
        "format_version": manifest.get("format_version"),
        "package_version": manifest.get("package_version"),
        "manifest_ok": not problems,
        "problems": problems,
        "members": members,
    }


def name_text(name: x509.Name) -> str:
    """``CN=ccm, OU=…, O=…``: RFC 4514 order, spaced for people."""
    return ", ".join(rdn.rfc4514_string() for rdn in reversed(name.rdns))


def _identity(extensions: x509.Extensions) -> Report | None:
    """The identity for a report: None without a SPIFFE ID, an error when it is invalid."""
    uris = [name for name in _sans(extensions) if name.startswith("URI:")]
    if not any(uri.startswith("URI:spiffe://") for uri in uris):
        return None
    try:
        identity = identity_in(extensions)
    except CertserverError as exc:
        return {"spiffe_id": uris[0][4:], "error": exc.message}
    return {
        "spiffe_id": identity.spiffe_id,
        "ccid": identity.ccid.value,
        "component": identity.component.folder,
    }


def _sans(extensions: x509.Extensions) -> list[str]:
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [_general_name(name) for name in san]


def _general_name(name: x509.GeneralName) -> str:
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.IPAddress):
        return f"IP:{name.value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}"
    if isinstance(name, x509.RFC822Name):
        return f"email:{name.value}"
    return f"{type(name).__name__}:{name.value}"


def _extension(ext: x509.Extension[x509.ExtensionType]) -> Report:
    value = ext.value
    text: str
    if isinstance(value, x509.BasicConstraints):
        text = f"CA:{'TRUE' if value.ca else 'FALSE'}"
        if value.path_length is not None:
            text += f", pathlen:{value.path_length}"
    elif isinstance(value, x509.KeyUsage):
        used = [label for name, label in _KEY_USAGES.items() if getattr(value, name)]
        if value.key_agreement:
            used += [label for name, label in _AGREEMENT_ONLY.items() if getattr(value, name)]
        text = ", ".join(used)
    elif isinstance(value, x509.ExtendedKeyUsage):
        text = ", ".join(_EKU_NAMES.get(oid, oid.dotted_string) for oid in value)
    elif isinstance(value, x509.SubjectAlternativeName):
        text = ", ".join(_general_name(name) for name in value)
    elif isinstance(value, x509.SubjectKeyIdentifier):
        text = value.digest.hex()
    elif isinstance(value, x509.AuthorityKeyIdentifier):
        text = value.key_identifier.hex() if value.key_identifier else "(issuer and serial)"
    else:
        text = str(value)
    name = ext.oid._name if ext.oid._name != "Unknown OID" else ext.oid.dotted_string
    if ext.oid == ExtensionOID.SUBJECT_ALTERNATIVE_NAME:
        name = "subjectAltName"
    return {"name": name, "critical": ext.critical, "value": text}


def is_self_signed(cert: x509.Certificate) -> bool:
    """Issued by itself: the same name, and its own key verifies the signature."""
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _signature_name(cert: x509.Certificate) -> str:
    oid = cert.signature_algorithm_oid
    return oid._name if oid._name != "Unknown OID" else oid.dotted_string
