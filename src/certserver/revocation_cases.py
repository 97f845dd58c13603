"""Keeping certificates alive: what expires when, revocation, and the deployment CA's CRL."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from certserver import package
from certserver.authority import CertificateAuthority
from certserver.errors import InvalidInput
from certserver.files import check_writable_dir, place_all
from certserver.hosts import Host, hosts_in
from certserver.identity import Component, DeploymentName, Identity
from certserver.keys import from_pkcs8_der, to_pkcs8_der
from certserver.ocsp import Responder, SerialStatus, key_hash, respond
from certserver.opening import never_created
from certserver.package import ComponentMaterial, fingerprint
from certserver.pem import certificates_pem
from certserver.profiles import BACKDATE, COMPONENT_VALIDITY_DAYS, CaMode, Organization
from certserver.records import (
    authority_of,
    authority_record,
    certificate_record,
    chain_of,
    to_material,
    unseal_authority,
    unseal_components,
)
from certserver.revocation import CRL_LIFETIME, Reason, Revoked, build_crl
from certserver.store import DeploymentState
from certserver.usecases import UseCases, check_target, first_arg
from certserver.usecases import audited as _audited

_SERIAL = re.compile(r"(?:0x)?([0-9a-f:]{1,64})")


@dataclass(frozen=True, slots=True)
class CertificateStatus:
    deployment: DeploymentName
    what: str  # "ca", a component folder, or "<folder> (issued)"
    serial: str
    not_after: dt.datetime
    days_left: int
    state: str


@dataclass(frozen=True, slots=True)
class Revocation:
    deployment: DeploymentName
    serial: str
    reason: Reason
    crl_number: int


def parse_serial(text: str) -> str:
    """A serial as certserver writes it (lowercase hex, no leading zeros, no colons)."""
    found = _SERIAL.fullmatch(text.strip().lower())
    if not found:
        raise InvalidInput(f"invalid serial {text!r}: expected hexadecimal, as openssl prints it")
    return found.group(1).replace(":", "").lstrip("0") or "0"


@dataclass(frozen=True, slots=True)
class Renewal:
    deployment: DeploymentName
    components: tuple[Component, ...]
    package_version: int
    file_name: str
    data: bytes
    written_to: Path | None
    #: Components with no current certificate (revoked, or renewed by the component
    #: itself) that were not renewed: ``--rekey --component X`` brings one back.
    skipped: tuple[Component, ...] = ()


class RevocationCases(UseCases):
    @_audited("ca.rotate", first_arg)
    def rotate_ca(
        self, name: DeploymentName, *, out_dir: Path | None = None, force: bool = False
    ) -> Renewal:
        """A new deployment CA. The next package trusts both (``ca.crt`` holds both), the
        components' certificates stay as they are and keep working; what is issued from now
        on (``renew``, ``sign-csr``) comes from the new CA."""
        store, key = self._open(create=False)
        record = store.get_deployment(name)
        if record.ca_mode is not CaMode.CERTSERVER:
            raise InvalidInput(
                f"deployment {name}'s CA is signed by an enterprise CA (--ca {record.ca_mode}); "
                "rotating it needs a new enterprise signature, which certserver does not do yet"
            )
        old = authority_of(record, key, store.location)
        target = None
        if out_dir is not None:
            target = check_target(out_dir, package.package_file_name(name), force=force)
        now = self._now()
        new = CertificateAuthority.create(
            name, record.ccid, Organization(record.organization), record.key_spec, now
        )
        material = replace(
            to_material(record, key, store.location),
            anchors=(new.certificate, old.certificate),
            package_version=record.package_version + 1,
        )
        data = package.build(material)
        new_record = authority_record(new.certificate, to_pkcs8_der(new.key), record.ccid, key)
        self._commit(
            store, target, data, force, lambda c: store.rotate_authority(c, name, new_record)
        )
        return Renewal(name, (), material.package_version, material.file_name, data, target)

    @_audited("ca.finish-rotation", first_arg)
    def finish_rotation(
        self, name: DeploymentName, *, out_dir: Path | None = None, force: bool = False
    ) -> Renewal:
        """The old CA is no longer trusted: the next package's ``ca.crt`` holds the new one
        only. Refused while a certificate of the old CA is still in use (renew it first)."""
        store, key = self._open(create=False)
        record = store.get_deployment(name)
        target = None
        if out_dir is not None:
            target = check_target(out_dir, package.package_file_name(name), force=force)
        material = to_material(record, key, store.location)
        material = replace(
            material, anchors=material.anchors[:1], package_version=record.package_version + 1
        )
        data = package.build(material)
        self._commit(store, target, data, force, lambda c: store.finish_rotation(c, name))
        return Renewal(name, (), material.package_version, material.file_name, data, target)

    @_audited("deployment.renew", first_arg)
    def renew(
        self,
        name: DeploymentName,
        components: Collection[Component] = (),
        *,
        rekey: bool = False,
        out_dir: Path | None = None,
        force: bool = False,
    ) -> Renewal:
        """New certificates with the same identities (same keys unless ``rekey``) for
        ``components`` (default: all), a higher package version, and the new package."""
        store, key = self._open(create=False)
        record = store.get_deployment(name)
        ca = self._publishing(authority_of(record, key, store.location), name)
        wanted = list(dict.fromkeys(components)) or [c.component for c in record.certificates]
        present = {c.component for c in record.certificates}
        skipped = () if components else tuple(c for c in Component if c not in present)
        target = None
        if out_dir is not None:
            target = check_target(out_dir, package.package_file_name(name), force=force)
        now = self._now()
        days_left = (ca.certificate.not_valid_after_utc - now) // dt.timedelta(days=1)
        if days_left < 1:
            raise InvalidInput(f"the CA of deployment {name} expires within a day: rotate it")
        current = {
            item.component: item
            for item in unseal_components(
                record,
                [x509.load_der_x509_certificate(c.cert_der) for c in record.certificates],
                key,
            )
        }
        fresh = []
        hosts_used: dict[Component, tuple[Host, ...]] = {}
        for component in wanted:
            old = current.get(component)
            if old is None and not rekey:
                raise InvalidInput(
                    f"deployment {name} has no active {component} (revoked?): renew it with --rekey"
                )
            private = (
                record.key_spec.generate()
                if rekey or old is None
                else from_pkcs8_der(old.key_pkcs8_der)
            )
            hosts = tuple(record.hosts.get(component, ()))
            if not hosts and old is not None:
                hosts = hosts_in(old.certificate)
            hosts_used[component] = hosts
            days = record.validity_days or (
                _lifetime(old.certificate) if old else COMPONENT_VALIDITY_DAYS
            )
            cert = ca.issue(
                Identity(record.ccid, component),
                private.public_key(),
                record.key_spec,
                Organization(record.organization),
                hosts,
                now,
                min(days, days_left),
            )
            fresh.append(ComponentMaterial(component, cert, to_pkcs8_der(private)))
            current[component] = fresh[-1]
        order = list(Component)
        material = replace(
            to_material(record, key, store.location),
            components=tuple(sorted(current.values(), key=lambda m: order.index(m.component))),
            package_version=record.package_version + 1,
        )
        data = package.build(material)
        rows = [certificate_record(item, hosts_used, record.ccid, key) for item in fresh]
        self._commit(
            store, target, data, force, lambda c: store.replace_certificates(c, name, rows)
        )
        return Renewal(
            name,
            tuple(wanted),
            material.package_version,
            material.file_name,
            data,
            target,
            skipped,
        )

    def status(self, name: DeploymentName | None = None) -> list[CertificateStatus]:
        """Every certificate that matters (the CA, the packaged ones, those issued by
        sign-csr), with days left; pending deployments have none yet."""
        store = self._open_store(create=False)
        names = [name] if name is not None else [s.name for s in store.list_deployments()]
        now = self._now()
        rows: list[CertificateStatus] = []
        for each in names:
            record = store.get_deployment(each)
            if record.state is DeploymentState.PENDING:
                continue
            if record.authority is not None:
                ca = record.authority
                rows.append(_row(each, "ca", ca.serial, ca.not_after, now, "active"))
            for cert in record.certificates:
                rows.append(
                    _row(each, cert.component.folder, cert.serial, cert.not_after, now, "active")
                )
            issued = store.issued_certificates(each)
            for cert in issued:
                what = f"{cert.component.folder} (issued)"
                rows.append(_row(each, what, cert.serial, cert.not_after, now, "issued"))
            covered = {c.component for c in record.certificates} | {c.component for c in issued}
            if record.authority is not None:
                for component in Component:
                    if component not in covered:  # revoked and not renewed: an alert
                        rows.append(
                            CertificateStatus(
                                each, f"{component.folder} (none)", "-", now, -1, "missing"
                            )
                        )
        return rows

    @_audited("certificate.revoke", first_arg)
    def revoke(
        self,
        name: DeploymentName,
        *,
        component: Component | None = None,
        serial: str | None = None,
        reason: Reason = Reason.UNSPECIFIED,
    ) -> Revocation:
        """Revoke a certificate (by serial), or every current certificate of a component
        (the packaged one and those renewed by the component itself), and make the CRLs
        again at once, in the same transaction."""
        if (component is None) == (serial is None):
            raise InvalidInput("name the certificate by --component or by --serial")
        store, _key = self._open(create=False)
        cas = self._our_cas(name)
        now = self._now()
        with store.transaction() as connection:
            serials, touched = store.revoke(
                connection,
                name,
                serial=parse_serial(serial) if serial is not None else None,
                component=component,
                reason=reason.value,
                at=now,
            )
            numbers = [self._remake_crl(connection, cas[fp], fp, now) for fp in touched]
            entry = self._ok_entry()
            if entry is not None:
                store.add_audit(entry, connection)
        self._ok_written()
        return Revocation(name, ", ".join(serials), reason, max(numbers))

    def crls(self, name: DeploymentName) -> list[x509.CertificateRevocationList]:
        """The current CRL of the deployment's CA (first) and, during a rotation, of the
        one being rotated out; each made again when none is younger than half its lifetime
        (so a published one never lapses while it is fetched)."""
        store = self._open_store(create=False)
        fingerprints = store.crl_authorities(name)
        if not fingerprints:
            store.get_deployment(name)  # unknown: DeploymentNotFound
            raise InvalidInput(
                f"deployment {name} has no CA of certserver's: its CRL is the enterprise's"
            )
        now = self._now()
        found: list[x509.CertificateRevocationList | None] = []
        for fp in fingerprints:
            latest = store.latest_crl(fp)
            fresh = latest is not None and latest[1] - now > CRL_LIFETIME / 2
            found.append(x509.load_der_x509_crl(latest[2]) if latest and fresh else None)
        if all(crl is not None for crl in found):
            return [crl for crl in found if crl is not None]
        cas = self._our_cas(name)
        made: list[x509.CertificateRevocationList] = []
        with store.transaction() as connection:
            store.lock_deployment(connection, name)
            for fp, crl in zip(fingerprints, found, strict=True):
                if crl is None:
                    self._remake_crl(connection, cas[fp], fp, now)
                    crl = x509.load_der_x509_crl(store.crl_der(connection, fp))
                made.append(crl)
        return made

    def crl(self, name: DeploymentName) -> x509.CertificateRevocationList:
        """The current CRL of the deployment's CA."""
        return self.crls(name)[0]

    def _our_cas(self, name: DeploymentName) -> dict[str, CertificateAuthority]:
        """The deployment's CAs certserver holds (active, and retiring during a rotation),
        by fingerprint, their keys unsealed."""
        store, key = self._open(create=False)
        record = store.get_deployment(name)
        authority_of(record, key, store.location)  # the refusal when there is none
        return {
            a.fingerprint: unseal_authority(record, a, key, store.location)
            for a in (record.authority, record.retiring)
            if a is not None
        }

    def _remake_crl(
        self, connection: Any, ca: CertificateAuthority, fp: str, now: dt.datetime
    ) -> int:
        """A new CRL for ``ca`` from every revocation it has, numbered above the
        deployment's last; stored on ``connection``. Returns its number."""
        store = self._open_store(create=False)
        number, listed = store.crl_state(connection, fp)
        crl = build_crl(
            ca, [Revoked(int(s, 16), at, Reason(r)) for s, at, r in listed], number, now
        )
        store.put_crl(
            connection,
            fp,
            number,
            crl.last_update_utc,
            crl.next_update_utc or now + CRL_LIFETIME,
            crl.public_bytes(Encoding.DER),
        )
        return number

    def component_anchors(self) -> bytes:
        """PEM of every trust anchor a component certificate may chain to (each ready
        deployment's), for a server that lets components authenticate with them."""
        if never_created(self.settings):
            return b""
        store = self._open_store(create=False)
        found: dict[str, x509.Certificate] = {}
        for summary in store.list_deployments():
            if summary.state is DeploymentState.PENDING:
                continue
            anchors, _ = chain_of(store.get_deployment(summary.name), store.location)
            for cert in anchors:
                found.setdefault(fingerprint(cert), cert)
        return certificates_pem(list(found.values()))

    def ocsp_response(self, request_der: bytes) -> bytes:
        """The OCSP response (RFC 6960) for any of certserver's deployment CAs."""
        store, key = self._open(create=False)

        def find(issuer_key_hash: bytes, algorithm: hashes.HashAlgorithm) -> Responder | None:
            for name, ca_fingerprint, cert_der in store.signing_authorities():
                cert = x509.load_der_x509_certificate(cert_der)
                if key_hash(cert, algorithm) != issuer_key_hash:
                    continue
                record = store.get_deployment(name)
                authority = next(
                    a
                    for a in (record.authority, record.retiring)
                    if a is not None and a.fingerprint == ca_fingerprint
                )
                ca = unseal_authority(record, authority, key, store.location)

                def status_of(serial: str, fp: str = ca_fingerprint) -> SerialStatus:
                    known, revoked_at, reason = store.serial_status(fp, serial)
                    return SerialStatus(known, revoked_at, Reason(reason) if reason else None)

                return Responder(ca, status_of)
            return None

        return respond(request_der, find, self._now())

    def export_crl(self, name: DeploymentName, out_dir: Path, *, force: bool) -> list[Path]:
        """``<name>.crl`` (DER) and ``<name>.crl.pem``: both or neither."""
        current = self.crls(name)
        check_writable_dir(out_dir)
        files = {
            out_dir / f"{name}.crl": current[0].public_bytes(Encoding.DER),
            # during a rotation both CAs' CRLs, for components that check either's leaves
            out_dir / f"{name}.crl.pem": b"".join(c.public_bytes(Encoding.PEM) for c in current),
        }
        for path in files:
            check_target(out_dir, path.name, force=force)
        place_all(files, replace=force)
        return list(files)


def _row(
    name: DeploymentName,
    what: str,
    serial: str,
    not_after: dt.datetime,
    now: dt.datetime,
    state: str,
) -> CertificateStatus:
    days = (not_after - now) // dt.timedelta(days=1)
    return CertificateStatus(name, what, serial, not_after, days, state)


def _lifetime(cert: x509.Certificate) -> int:
    span = cert.not_valid_after_utc - cert.not_valid_before_utc - BACKDATE
    return max(span // dt.timedelta(days=1), 1)
