"""A deployment's certificate authority: create it and issue component certificates. No I/O."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

from certserver.errors import InvalidInput
from certserver.hosts import Host
from certserver.identity import Ccid, DeploymentName, Identity
from certserver.keys import KeySpec, PrivateKey, PublicKey, spec_of
from certserver.profiles import (
    CA_VALIDITY_DAYS,
    Organization,
    Validity,
    ca_extensions,
    ca_subject,
    component_extensions,
    component_subject,
)


@dataclass(frozen=True, slots=True)
class PublicUrls:
    """Where relying parties find a CA's revocation data (named in what it issues)."""

    crl: str
    ocsp: str

    @classmethod
    def of(cls, base_url: str, name: DeploymentName) -> PublicUrls:
        return cls(f"{base_url}/crl/{name}.crl", f"{base_url}/ocsp")

    def extensions(self) -> list[tuple[x509.ExtensionType, bool]]:
        point = x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(self.crl)],
            relative_name=None,
            reasons=None,
            crl_issuer=None,
        )
        access = x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(self.ocsp)
        )
        return [
            (x509.CRLDistributionPoints([point]), False),
            (x509.AuthorityInformationAccess([access]), False),
        ]


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA key and certificate. Issues leaves that carry a deployment identity."""

    key: PrivateKey
    certificate: x509.Certificate
    #: When set, issued certificates name these (CRL distribution point, OCSP).
    urls: PublicUrls | None = None
    spec: KeySpec = field(init=False)
    _aki: x509.AuthorityKeyIdentifier = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec", spec_of(self.key))
        ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)
        object.__setattr__(self, "_aki", aki)

    @classmethod
    def create(
        cls,
        name: DeploymentName,
        ccid: Ccid,
        org: Organization,
        spec: KeySpec,
        now: dt.datetime,
        *,
        validity_days: int = CA_VALIDITY_DAYS,
        key: PrivateKey | None = None,
    ) -> CertificateAuthority:
        """A new self-signed deployment CA (pathLen 0, keyCertSign + cRLSign)."""
        key = key if key is not None else spec.generate()
        validity = Validity.starting(now, validity_days)
        subject = ca_subject(name, ccid, org)
        builder = _builder(subject, subject, key.public_key(), validity)
        for extension, critical in ca_extensions(key.public_key()):
            builder = builder.add_extension(extension, critical)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False
        )
        return cls(key, builder.sign(key, spec.signature_hash()))

    def issue(
        self,
        identity: Identity,
        public_key: PublicKey,
        spec: KeySpec,
        org: Organization,
        hosts: Sequence[Host],
        now: dt.datetime,
        validity_days: int,
    ) -> x509.Certificate:
        """A component certificate for ``identity`` with DNS/IP SANs for ``hosts``."""
        validity = Validity.starting(now, validity_days)
        if validity.not_after > self.certificate.not_valid_after_utc:
            raise InvalidInput(
                f"a validity of {validity_days} days would outlive the deployment CA "
                f"(valid until {self.certificate.not_valid_after_utc:%Y-%m-%d})"
            )
        builder = _builder(
            component_subject(identity, org), self.certificate.subject, public_key, validity
        )
        for extension, critical in component_extensions(identity, hosts, spec, public_key):
            builder = builder.add_extension(extension, critical)
        builder = builder.add_extension(self._aki, False)
        for extension, critical in self.urls.extensions() if self.urls else ():
            builder = builder.add_extension(extension, critical)
        return builder.sign(self.key, self.spec.signature_hash())


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: PublicKey, validity: Validity
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
    )
