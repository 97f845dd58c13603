"""Federation: one deployment's components accepting another deployment's identities.

A deployment's trust bundle (its anchors, its CCID and the key identifiers of the CAs that
issue its components' certificates) is exported as a SPIFFE bundle (JSON) or as PEM with a
header. A link records that some components of a deployment accept the linked CCID; their
``ca.crt`` then carries the linked anchors and ``links.json`` the linked CCID and issuers,
which :class:`certserver.mtls.PeerCheck` uses.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from certserver.errors import CertserverError, FileProblem
from certserver.extensions import extension_of
from certserver.identity import Ccid, Component, DeploymentName
from certserver.pem import ParseError, certificates_pem, parse
from certserver.profiles import CA_UNIT as _CA_UNIT

LINKS_FORMAT_VERSION = 1
_PEM_TITLE = "# certserver trust bundle"
_OU = NameOID.ORGANIZATIONAL_UNIT_NAME
_SHA256 = hashes.SHA256()


@dataclass(frozen=True, slots=True)
class TrustBundle:
    """What another deployment needs to accept this one's identities."""

    name: DeploymentName
    ccid: Ccid
    anchors: tuple[x509.Certificate, ...]
    #: Key identifiers of the CAs that issue the components' certificates (hex).
    issuer_key_ids: tuple[str, ...]

    @property
    def trust_domain(self) -> str:
        return self.ccid.value

    def to_spiffe_json(self) -> bytes:
        """A SPIFFE trust bundle (a JWK set of x509-svid authorities) with certserver's
        fields under ``certserver``."""
        keys = [_jwk(cert) for cert in self.anchors]
        document = {
            "keys": keys,
            "spiffe_sequence": 1,
            "certserver": {
                "deployment": self.name.value,
                "ccid": self.ccid.value,
                "trust_domain": self.trust_domain,
                "issuer_key_ids": list(self.issuer_key_ids),
            },
        }
        return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"

    def to_pem(self) -> bytes:
        header = [
            _PEM_TITLE,
            f"# deployment: {self.name}",
            f"# ccid: {self.ccid}",
            f"# issuer-key-ids: {','.join(self.issuer_key_ids)}",
        ]
        return ("\n".join(header) + "\n").encode() + certificates_pem(list(self.anchors))

    @classmethod
    def read(cls, data: bytes, source: str) -> TrustBundle:
        """A bundle from its SPIFFE JSON or its PEM form; FileProblem naming ``source``."""
        try:
            if data.lstrip().startswith(b"{"):
                return cls._from_json(data, source)
            return cls._from_pem(data, source)
        except FileProblem:
            raise
        except (
            CertserverError,
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            RecursionError,
        ) as exc:
            reason = exc.message if isinstance(exc, CertserverError) else "damaged"
            raise FileProblem(source, f"not a certserver trust bundle ({reason})") from None

    @classmethod
    def _from_json(cls, data: bytes, source: str) -> TrustBundle:
        document = json.loads(data)
        ours = document["certserver"]
        anchors = []
        for key in document["keys"]:
            if key.get("use") != "x509-svid":
                continue
            for der in key["x5c"][:1]:
                anchors.append(x509.load_der_x509_certificate(base64.b64decode(der)))
        return cls._checked(
            DeploymentName(ours["deployment"]),
            Ccid(ours["ccid"]),
            anchors,
            [str(k) for k in ours.get("issuer_key_ids", [])],
            source,
        )

    @classmethod
    def _from_pem(cls, data: bytes, source: str) -> TrustBundle:
        fields: dict[str, str] = {}
        for line in data.decode("utf-8", "replace").splitlines():
            if line.startswith("# ") and ":" in line:
                key, _, value = line[2:].partition(":")
                fields[key.strip()] = value.strip()
        if "ccid" not in fields or "deployment" not in fields:
            raise FileProblem(source, "has no '# ccid:' header: not a certserver trust bundle")
        try:
            anchors = parse(data).certificates
        except ParseError as exc:
            raise FileProblem(source, str(exc)) from None
        ids = [k for k in fields.get("issuer-key-ids", "").split(",") if k]
        return cls._checked(
            DeploymentName(fields["deployment"]), Ccid(fields["ccid"]), anchors, ids, source
        )

    @classmethod
    def _checked(
        cls,
        name: DeploymentName,
        ccid: Ccid,
        anchors: Sequence[x509.Certificate],
        issuer_key_ids: Sequence[str],
        source: str,
    ) -> TrustBundle:
        if not anchors:
            raise FileProblem(source, "holds no trust anchor")
        for cert in anchors:
            constraints = extension_of(cert, x509.BasicConstraints)
            if constraints is None or not constraints.ca:
                raise FileProblem(source, f"{cert.subject.rfc4514_string()} is not a CA")
            units = [a.value for a in cert.subject.get_attributes_for_oid(_OU)]
            if _CA_UNIT in units and ccid.value not in units:  # a certserver deployment CA
                raise FileProblem(source, f"its CA belongs to another CCID than {ccid}")
        if not issuer_key_ids:
            # without them any CA the component trusts could mint the linked identities
            raise FileProblem(source, "names no issuer key identifiers to pin")
        for key_id in issuer_key_ids:
            bytes.fromhex(key_id)  # ValueError for anything else
        return cls(name, ccid, tuple(anchors), tuple(issuer_key_ids))


@dataclass(frozen=True, slots=True)
class Link:
    """Components of a deployment that accept a linked deployment's identities."""

    bundle: TrustBundle
    components: frozenset[Component]


def issuer_key_ids(leaves: Iterable[x509.Certificate]) -> tuple[str, ...]:
    """The authority key identifiers of ``leaves``: who issues a deployment's certificates."""
    from certserver.mtls import authority_key_id  # mtls reads links with this module

    found: list[str] = []
    for leaf in leaves:
        key_id = authority_key_id(leaf)
        if key_id is not None and key_id.hex() not in found:
            found.append(key_id.hex())
    return tuple(found)


def links_json(links: Sequence[Link]) -> bytes:
    """``links.json`` of a component folder: the linked CCIDs it accepts, with their issuers."""
    rows = [
        {
            "deployment": link.bundle.name.value,
            "ccid": link.bundle.ccid.value,
            "issuer_key_ids": list(link.bundle.issuer_key_ids),
            "anchors_sha256": [c.fingerprint(_SHA256).hex() for c in link.bundle.anchors],
        }
        for link in sorted(links, key=lambda link: link.bundle.ccid.value)
    ]
    document = {"format_version": LINKS_FORMAT_VERSION, "links": rows}
    return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"


def read_links_json(data: bytes, source: str) -> dict[Ccid, frozenset[bytes]]:
    """Linked CCID -> issuer key identifiers, from a component folder's ``links.json``."""
    try:
        document = json.loads(data)
        if document["format_version"] != LINKS_FORMAT_VERSION:
            raise FileProblem(source, f"has format {document['format_version']!r}, expected 1")
        linked = {
            Ccid(row["ccid"]): frozenset(bytes.fromhex(k) for k in row["issuer_key_ids"])
            for row in document["links"]
        }
    except FileProblem:
        raise
    except (CertserverError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise FileProblem(source, "is damaged: not a links file") from None
    if any(not pins for pins in linked.values()):
        raise FileProblem(source, "names a linked deployment without issuer key identifiers")
    return linked


def linked_anchors(path: Path) -> set[str]:
    """The SHA-256 fingerprints of the linked anchors a ``links.json`` names."""
    try:
        document = json.loads(path.read_bytes())
        return {str(fp) for row in document["links"] for fp in row["anchors_sha256"]}
    except (ValueError, KeyError, TypeError, RecursionError):
        raise FileProblem(path, "is damaged: not a links file") from None


def _b64url_int(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _jwk(cert: x509.Certificate) -> dict[str, object]:
    key = cert.public_key()
    der = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    jwk: dict[str, object] = {"use": "x509-svid", "x5c": [der]}
    if isinstance(key, ec.EllipticCurvePublicKey):
        numbers = key.public_numbers()
        size = (key.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[key.curve.name]
        jwk.update(
            kty="EC",
            crv=crv,
            x=base64.urlsafe_b64encode(numbers.x.to_bytes(size, "big")).rstrip(b"=").decode(),
            y=base64.urlsafe_b64encode(numbers.y.to_bytes(size, "big")).rstrip(b"=").decode(),
        )
    elif isinstance(key, rsa.RSAPublicKey):
        numbers_rsa = key.public_numbers()
        jwk.update(kty="RSA", n=_b64url_int(numbers_rsa.n), e=_b64url_int(numbers_rsa.e))
    return jwk
