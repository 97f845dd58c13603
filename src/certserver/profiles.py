"""Certificate profiles as data: validity, subject and extensions of each kind (DESIGN.md §3.2)."""

from __future__ import annotations

import datetime as dt
import enum
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certserver.errors import InvalidInput
from certserver.hosts import Host
from certserver.identity import Ccid, DeploymentName, Identity
from certserver.keys import KeySpec, PublicKey

#: Certificates start slightly in the past so a peer whose clock lags still accepts them.
BACKDATE = dt.timedelta(minutes=5)
CA_VALIDITY_DAYS = 3650
COMPONENT_VALIDITY_DAYS = 730
CLIENT_CERT_MAX_DAYS = 397
_MAX_ORG = 64  # ub-organization-name (RFC 5280)


def _hidden(ch: str) -> bool:
    """Characters that print as nothing or reorder text (bidi controls, separators)."""
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


@dataclass(frozen=True, slots=True)
class Organization:
    value: str

    def __post_init__(self) -> None:
        if not self.value.strip() or len(self.value) > _MAX_ORG:
            raise InvalidInput(f"invalid organization {self.value!r}: use 1-{_MAX_ORG} characters")
        if not self.value.isprintable() or any(_hidden(ch) for ch in self.value):
            raise InvalidInput(
                "invalid organization: control, format and separator characters are not allowed"
            )

    def __str__(self) -> str:
        return self.value


DEFAULT_ORGANIZATION = Organization("certserver")


@dataclass(frozen=True, slots=True)
class Validity:
    not_before: dt.datetime
    not_after: dt.datetime

    @classmethod
    def starting(cls, now: dt.datetime, days: int) -> Validity:
        if now.tzinfo is None:
            raise ValueError("time must be timezone-aware")
        if days < 1:
            raise InvalidInput(f"invalid validity {days} days: must be at least 1")
        return cls(now - BACKDATE, now + dt.timedelta(days=days))


class CaMode(enum.StrEnum):
    """Who signs a deployment's certificates (``deployment create --ca``)."""

    #: certserver makes the deployment CA and signs everything itself.
    CERTSERVER = "certserver"
    #: certserver makes the deployment CA's key; an enterprise CA signs it as an intermediate.
    ENTERPRISE_INTERMEDIATE = "enterprise-intermediate"
    #: certserver makes each component's key; an enterprise CA signs each component's CSR.
    ENTERPRISE_LEAF = "enterprise-leaf"


CA_UNIT = "deployment CA"


def ca_subject(name: DeploymentName, ccid: Ccid, org: Organization) -> x509.Name:
    """``CN=<name>, OU=deployment CA, OU=<ccid>, O=<org>``: unique per deployment (the CCID).

    The name is the CN on its own (a 63-character name fits the 64 a CN allows); the extra
    OU says what it is and keeps it apart from any component subject, even for a deployment
    named like a component.
    """
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org.value),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ccid.value),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, CA_UNIT),
            x509.NameAttribute(NameOID.COMMON_NAME, name.value),
        ]
    )


def component_subject(identity: Identity, org: Organization) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org.value),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, identity.ccid.value),
            x509.NameAttribute(NameOID.COMMON_NAME, identity.component.folder),
        ]
    )


Extension = tuple[x509.ExtensionType, bool]


def ca_extensions(public_key: PublicKey) -> list[Extension]:
    return [
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (_key_usage(cert_sign=True), True),
        (x509.SubjectKeyIdentifier.from_public_key(public_key), False),
    ]


#: serverAuth + clientAuth: every component is both ends of mutual TLS.
COMPONENT_EKU = x509.ExtendedKeyUsage(
    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
)
_LEAF_CONSTRAINTS = x509.BasicConstraints(ca=False, path_length=None)


def component_extensions(
    identity: Identity, hosts: Sequence[Host], spec: KeySpec, public_key: PublicKey
) -> list[Extension]:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.spiffe_id)]
    names.extend(host.general_name() for host in hosts)
    return [
        (_LEAF_CONSTRAINTS, True),
        (_key_usage(key_encipherment=spec.is_rsa), True),
        (COMPONENT_EKU, False),
        (x509.SubjectAlternativeName(names), False),
        (x509.SubjectKeyIdentifier.from_public_key(public_key), False),
    ]


def _key_usage(*, cert_sign: bool = False, key_encipherment: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
