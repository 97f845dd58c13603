"""Certificates carry the identity and extensions of DESIGN.md §3.2."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certserver.authority import CertificateAuthority
from certserver.errors import InvalidInput
from certserver.identity import Ccid, Component, DeploymentName, Identity
from certserver.keys import KeySpec
from certserver.mtls import identity_of
from certserver.profiles import DEFAULT_ORGANIZATION, Organization

from .conftest import LOOPBACK_HOSTS, Extracted

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def _load(path: object) -> x509.Certificate:
    from pathlib import Path

    assert isinstance(path, Path)
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.mark.parametrize("component", list(Component))
def test_component_certificate_profile(alpha: Extracted, component: Component) -> None:
    cert = _load(alpha.cert(component))
    ccid = alpha.result.deployment.ccid
    ext = cert.extensions

    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"spiffe://{ccid}/{component.folder}"
    ]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert identity_of(cert) == Identity(ccid, component)

    subject = {attr.oid: attr.value for attr in cert.subject}
    assert subject == {
        NameOID.COMMON_NAME: component.folder,
        NameOID.ORGANIZATIONAL_UNIT_NAME: ccid.value,
        NameOID.ORGANIZATION_NAME: DEFAULT_ORGANIZATION.value,
    }

    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert not ku.value.key_encipherment  # EC key: no key transport
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())

    ca = _load(alpha.ca(component))
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.serial_number > 0 and cert.serial_number.bit_length() >= 64

    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=730) <= lifetime <= dt.timedelta(days=730, minutes=6)


def test_deployment_ca_profile(alpha: Extracted) -> None:
    ca = _load(alpha.ca(Component.CCM))
    assert ca.subject == ca.issuer
    units = [a.value for a in ca.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    cn = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert units == [alpha.result.deployment.ccid.value, "deployment CA"]
    assert cn == "alpha"
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert lifetime >= dt.timedelta(days=3650)


def test_ca_subjects_differ_between_deployments(alpha: Extracted, bravo: Extracted) -> None:
    assert _load(alpha.ca(Component.CCM)).subject != _load(bravo.ca(Component.CCM)).subject


def test_serials_are_distinct_across_deployments(alpha: Extracted, bravo: Extracted) -> None:
    serials = [
        _load(deployment.cert(component)).serial_number
        for deployment in (alpha, bravo)
        for component in Component
    ]
    serials += [_load(d.ca(Component.CCM)).serial_number for d in (alpha, bravo)]
    assert len(set(serials)) == len(serials) == 14


@pytest.mark.parametrize("spec", list(KeySpec))
def test_every_key_type_issues_its_profile(spec: KeySpec) -> None:
    ccid = Ccid.generate()
    ca = CertificateAuthority.create(DeploymentName("keys"), ccid, DEFAULT_ORGANIZATION, spec, NOW)
    key = spec.generate()
    cert = ca.issue(
        Identity(ccid, Component.ESB_BROKER),
        key.public_key(),
        spec,
        DEFAULT_ORGANIZATION,
        LOOPBACK_HOSTS,
        NOW,
        30,
    )
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    # Erlang/OTP drops RSA key-exchange suites without keyEncipherment; EC keys never have it.
    assert ku.key_encipherment is spec.is_rsa
    public = cert.public_key()
    if spec.is_rsa:
        assert isinstance(public, rsa.RSAPublicKey) and public.key_size == spec.size
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.key_size == spec.size
    expected_hash = "sha384" if spec is KeySpec.EC_P384 else "sha256"
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == expected_hash


def test_a_leaf_may_not_outlive_its_ca() -> None:
    ccid = Ccid.generate()
    spec = KeySpec.EC_P256
    ca = CertificateAuthority.create(
        DeploymentName("short"), ccid, DEFAULT_ORGANIZATION, spec, NOW, validity_days=10
    )
    key = spec.generate()
    args = (Identity(ccid, Component.CCM), key.public_key(), spec, DEFAULT_ORGANIZATION, (), NOW)
    assert ca.issue(*args, 10).not_valid_after_utc <= ca.certificate.not_valid_after_utc
    with pytest.raises(InvalidInput, match="outlive the deployment CA"):
        ca.issue(*args, 11)


@pytest.mark.parametrize("value", ["", " ", "x" * 65, "bad\x00org", "tab\there"])
def test_invalid_organizations_are_refused(value: str) -> None:
    with pytest.raises(InvalidInput):
        Organization(value)


@pytest.mark.parametrize("name", ["a" * 63, "ccm", "esb_rabbit".replace("_", "-")])
def test_the_ca_subject_fits_every_name_and_never_equals_a_leaf(name: str) -> None:
    ccid = Ccid.generate()
    spec = KeySpec.EC_P256
    ca = CertificateAuthority.create(DeploymentName(name), ccid, DEFAULT_ORGANIZATION, spec, NOW)
    cn = ca.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == name
    for component in Component:
        leaf = ca.issue(
            Identity(ccid, component),
            spec.generate().public_key(),
            spec,
            DEFAULT_ORGANIZATION,
            (),
            NOW,
            1,
        )
        assert leaf.subject != ca.certificate.subject
