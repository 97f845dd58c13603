"""The use cases. The CLI (and later the API and the web page) call only this module."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certserver import package
from certserver.authority import CertificateAuthority
from certserver.clock import utc_now
from certserver.config import Settings
from certserver.errors import (
    DeploymentExists,
    FileProblem,
    InvalidInput,
    PolicyRefused,
    TargetExists,
)
from certserver.files import StagedFile, check_writable_dir
from certserver.hosts import Host
from certserver.identity import Ccid, Component, DeploymentName, Identity
from certserver.keys import KeySpec, profile_spec, to_pkcs8_der
from certserver.masterkey import MasterKey
from certserver.opening import master_key_for, never_created, open_store
from certserver.package import ComponentMaterial, DeploymentMaterial, fingerprint, serial_hex
from certserver.pem import ParseError, parse
from certserver.policy import csr_violations
from certserver.profiles import (
    BACKDATE,
    CA_VALIDITY_DAYS,
    COMPONENT_VALIDITY_DAYS,
    DEFAULT_ORGANIZATION,
    Organization,
)
from certserver.records import DeploymentView, authority_of, to_material, to_record, to_view
from certserver.store import (
    CertificateRecord,
    DeploymentSummary,
    Store,
)

Clock = Callable[[], dt.datetime]


@dataclass(frozen=True, slots=True)
class CreateRequest:
    name: DeploymentName
    out_dir: Path
    organization: Organization = DEFAULT_ORGANIZATION
    hosts: Mapping[Component, Sequence[Host]] | None = None
    key_spec: KeySpec = KeySpec.EC_P256
    validity_days: int = COMPONENT_VALIDITY_DAYS
    force: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.validity_days <= CA_VALIDITY_DAYS:
            raise InvalidInput(
                f"invalid validity {self.validity_days} days: component certificates need "
                f"1 day or more and may not outlive the {CA_VALIDITY_DAYS}-day deployment CA"
            )


@dataclass(frozen=True, slots=True)
class CreateResult:
    deployment: DeploymentView
    package_path: Path


class CertServer:
    """certserver's use cases over one store and master key, opened on first use."""

    def __init__(self, settings: Settings, clock: Clock = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        self._store: Store | None = None
        self._key: MasterKey | None = None
        self._writable = False

    def __enter__(self) -> CertServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        self._key = None

    # -- use cases -------------------------------------------------------------------------

    def create_deployment(self, request: CreateRequest) -> CreateResult:
        """CCID, CA and every component's certificate; rows in the store; the package on disk.

        Either all of it happens or none: a failure leaves no zip and no rows behind.
        """
        target = request.out_dir / package.package_file_name(request.name)
        check_writable_dir(request.out_dir)
        if target.is_dir():
            raise FileProblem(target, "is a directory")
        if os.path.lexists(target) and not request.force:
            raise TargetExists(target, "already exists (use --force to replace it)")
        store, key = self._open(create=True)
        if store.deployment_exists(request.name):
            raise DeploymentExists(f"deployment {request.name} already exists")

        material, ca_key_der = self._mint(request)
        record = to_record(material, ca_key_der, request.key_spec, request.hosts or {}, key)
        data = package.build(material)
        staged: StagedFile | None = None
        try:
            with store.transaction() as connection:
                store.add_deployment(connection, record)  # waits here if the store is busy
                staged = StagedFile(target, data)
                staged.place(replace=request.force)
        except BaseException:
            if staged is not None:
                staged.undo()
            raise
        assert staged is not None
        staged.finish()
        return CreateResult(to_view(record), target)

    def list_deployments(self) -> Sequence[DeploymentSummary]:
        """Every deployment (none for a fresh home). Needs no master key: nothing secret."""
        if never_created(self.settings):
            return []
        return self._open_store(create=False).list_deployments()

    def show_deployment(self, name: DeploymentName) -> DeploymentView:
        """One deployment's certificates (public data: needs no master key)."""
        return to_view(self._open_store(create=False).get_deployment(name))

    def sign_csr(
        self, name: DeploymentName, component: Component, csr_data: bytes, source: str
    ) -> x509.Certificate:
        """Sign a component's CSR made on its host (the key never travels), under policy.

        The CA sets the identity (subject, URI SAN); requested names must be among the
        component's recorded hosts. The certificate is recorded in the store.
        """
        try:
            found = parse(csr_data)
        except ParseError as exc:
            raise FileProblem(source, str(exc)) from None
        if len(found.csrs) != 1:
            raise FileProblem(source, f"holds {found.describe()}, expected one CSR")
        csr = found.csrs[0]
        store, key = self._open(create=False)
        record = store.get_deployment(name)
        allowed = next((c.hosts for c in record.certificates if c.component is component), ())
        problems, hosts = csr_violations(csr, component, allowed)
        if problems:
            raise PolicyRefused(source, problems)
        ca = authority_of(record, key, store.location)
        now = self.clock().astimezone(dt.UTC).replace(microsecond=0)
        days_left = (ca.certificate.not_valid_after_utc - now).days
        if days_left < 1:
            raise InvalidInput(f"the CA of deployment {name} has expired or expires today")
        packaged = next((c for c in record.certificates if c.component is component), None)
        lifetime = (
            round((packaged.not_after - packaged.not_before - BACKDATE) / dt.timedelta(days=1))
            if packaged is not None
            else COMPONENT_VALIDITY_DAYS
        )
        public_key = csr.public_key()
        cert = ca.issue(
            Identity(record.ccid, component),
            public_key,  # type: ignore[arg-type]  # EC or RSA: checked by the policy
            profile_spec(public_key),
            Organization(record.organization),
            hosts,
            now,
            min(lifetime, days_left),  # as long as the deployment's own certificates
        )
        store.add_issued(
            name,
            CertificateRecord(
                component=component,
                cert_der=cert.public_bytes(Encoding.DER),
                key_sealed=b"",  # the key stays on the component's host
                serial=serial_hex(cert),
                fingerprint=fingerprint(cert),
                hosts=tuple(hosts),
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
            ),
        )
        return cert

    def package_bytes(self, name: DeploymentName) -> tuple[str, bytes]:
        """The package's file name and bytes, made again from the store."""
        store, key = self._open(create=False)
        material = to_material(store.get_deployment(name), key, store.location)
        return material.file_name, package.build(material)

    def export_package(self, name: DeploymentName, out_dir: Path, *, force: bool) -> Path:
        check_writable_dir(out_dir)
        file_name, data = self.package_bytes(name)
        staged = StagedFile(out_dir / file_name, data)
        try:
            staged.place(replace=force)
        except BaseException:
            staged.undo()
            raise
        staged.finish()
        return staged.target

    # -- internals -------------------------------------------------------------------------

    def _mint(self, request: CreateRequest) -> tuple[DeploymentMaterial, bytes]:
        """The deployment's material and its CA key (PKCS#8 DER), all in memory."""
        now = self.clock().astimezone(dt.UTC).replace(microsecond=0)
        ccid = Ccid.generate()
        spec = request.key_spec
        ca = CertificateAuthority.create(request.name, ccid, request.organization, spec, now)
        hosts = request.hosts or {}
        components = []
        for component in Component:
            component_key = spec.generate()
            cert = ca.issue(
                Identity(ccid, component),
                component_key.public_key(),
                spec,
                request.organization,
                hosts.get(component, ()),
                now,
                request.validity_days,
            )
            components.append(ComponentMaterial(component, cert, to_pkcs8_der(component_key)))
        material = DeploymentMaterial(
            name=request.name,
            ccid=ccid,
            organization=request.organization.value,
            created_at=now,
            anchors=(ca.certificate,),
            intermediates=(),
            components=tuple(components),
        )
        return material, to_pkcs8_der(ca.key)

    def _open_store(self, *, create: bool) -> Store:
        if self._store is not None and (self._writable or not create):
            return self._store
        store = open_store(self.settings, create=create)
        self.close()
        self._store, self._writable = store, create
        return store

    def _open(self, *, create: bool) -> tuple[Store, MasterKey]:
        """The store and the master key that belongs to it; checks that they match."""
        store = self._open_store(create=create)
        if self._key is None:
            self._key = master_key_for(self.settings, store, create=create)
        return store, self._key


def _missing_or_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except FileNotFoundError:
        return True
