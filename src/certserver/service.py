"""The use cases. The CLI (and later the API and the web page) call only this module."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certserver import package
from certserver.authority import CertificateAuthority
from certserver.config import Settings
from certserver.errors import (
    DeploymentExists,
    FileProblem,
    InvalidInput,
    MasterKeyError,
    StoreCorrupt,
    StoreMissing,
    TargetExists,
)
from certserver.files import StagedFile, check_writable_dir, ensure_private_dir
from certserver.hosts import Host
from certserver.identity import Ccid, Component, DeploymentName, Identity
from certserver.inspection import name_text
from certserver.keys import KeySpec, to_pkcs8_der
from certserver.masterkey import MasterKey
from certserver.package import ComponentMaterial, DeploymentMaterial, fingerprint, serial_hex
from certserver.profiles import (
    CA_VALIDITY_DAYS,
    COMPONENT_VALIDITY_DAYS,
    DEFAULT_ORGANIZATION,
    Organization,
)
from certserver.store import (
    AuthorityRecord,
    CertificateRecord,
    DeploymentRecord,
    DeploymentSummary,
    Store,
)

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class CreateRequest:
    name: DeploymentName
    out_dir: Path
    organization: Organization = DEFAULT_ORGANIZATION
    hosts: Mapping[Component, Sequence[Host]] | None = None
    key_spec: KeySpec = KeySpec.EC_P256
    validity_days: int = COMPONENT_VALIDITY_DAYS
    force: bool = False


@dataclass(frozen=True, slots=True)
class ComponentView:
    component: Component
    serial: str
    fingerprint_sha256: str
    hosts: tuple[Host, ...]
    not_before: dt.datetime
    not_after: dt.datetime


@dataclass(frozen=True, slots=True)
class DeploymentView:
    name: DeploymentName
    ccid: Ccid
    organization: str
    key_spec: KeySpec
    created_at: dt.datetime
    package_version: int
    ca_subject: str
    ca_fingerprint_sha256: str
    ca_not_after: dt.datetime
    components: tuple[ComponentView, ...]


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
        if request.validity_days > CA_VALIDITY_DAYS:
            raise InvalidInput(
                f"invalid validity {request.validity_days} days: component certificates may "
                f"not outlive the {CA_VALIDITY_DAYS}-day deployment CA"
            )
        if target.is_dir():
            raise FileProblem(target, "is a directory")
        if os.path.lexists(target) and not request.force:
            raise TargetExists(target, "already exists (use --force to replace it)")
        store, key = self._open(create=True)
        if store.deployment_exists(request.name):
            raise DeploymentExists(f"deployment {request.name} already exists")

        material, ca_key_der = self._mint(request)
        record = _record(material, ca_key_der, request, key)
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
        return CreateResult(_view(record), target)

    def list_deployments(self) -> Sequence[DeploymentSummary]:
        """Every deployment (none for a fresh home). Needs no master key: nothing secret."""
        if self._never_created():
            return []
        return self._open_store(create=False).list_deployments()

    def show_deployment(self, name: DeploymentName) -> DeploymentView:
        """One deployment's certificates (public data: needs no master key)."""
        return _view(self._open_store(create=False).get_deployment(name))

    def package_bytes(self, name: DeploymentName) -> tuple[str, bytes]:
        """The package's file name and bytes, made again from the store."""
        store, key = self._open(create=False)
        material = _material(store.get_deployment(name), key, store.location)
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
        """The store; ``create`` allows making it (and the home) on first use."""
        if self._store is not None and (self._writable or not create):
            return self._store
        settings = self.settings
        key_path = settings.master_key_file
        sqlite = settings.sqlite_path
        if key_path.is_symlink() and not key_path.exists():
            raise MasterKeyError(f"{key_path}: master key is a dangling symlink")
        if (
            sqlite is not None
            and _missing_or_empty(sqlite)
            and settings.master_key_is_default
            and key_path.exists()
        ):
            raise StoreMissing(
                f"{sqlite}: store is missing but its master key {key_path} exists; "
                "restore the store, or move the key away to start a new one"
            )
        if create:
            if not settings.master_key_is_default and not key_path.exists():
                raise MasterKeyError(f"{key_path}: master key file is missing")
            ensure_private_dir(settings.home)
        store = Store.open(settings.database_url, create=create, busy_timeout=settings.busy_timeout)
        self.close()
        self._store, self._writable = store, create
        return store

    def _open(self, *, create: bool) -> tuple[Store, MasterKey]:
        """The store and the master key that belongs to it; checks that they match."""
        store = self._open_store(create=create)
        if self._key is None:
            self._key = self._master_key(store, create=create)
        return store, self._key

    def _never_created(self) -> bool:
        """True for a fresh home: no embedded store and no master key yet."""
        sqlite = self.settings.sqlite_path
        return (
            sqlite is not None
            and not sqlite.exists()
            and not self.settings.master_key_file.exists()
        )

    def _master_key(self, store: Store, *, create: bool) -> MasterKey:
        path = self.settings.master_key_file
        expected = store.master_key_id()
        if expected is None:
            if path.exists():
                key = MasterKey.load(path)
            elif create and self.settings.master_key_is_default:
                try:
                    key = MasterKey.create(path)
                except TargetExists:  # another first use made it a moment ago
                    key = MasterKey.load(path)
            else:
                raise MasterKeyError(f"{path}: master key file is missing")
            if not create:
                return key
            expected = store.claim_master_key_id(key.key_id)
        if not path.exists():
            raise MasterKeyError(
                f"{path}: master key file is missing; store {store.location} is sealed with "
                f"key id {expected}, and certserver never makes a new key for an existing store"
            )
        key = MasterKey.load(path)
        if key.key_id != expected:
            raise MasterKeyError(
                f"{path}: wrong master key for store {store.location} "
                f"(file has key id {key.key_id}, store expects {expected})"
            )
        return key


def _missing_or_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except FileNotFoundError:
        return True


def _seal_context(kind: str, ccid: Ccid, cert_fingerprint: str) -> bytes:
    """What a sealed key is bound to: its owner and its certificate."""
    return f"certserver:{kind}:{ccid}:{cert_fingerprint}".encode()


def _record(
    material: DeploymentMaterial, ca_key_der: bytes, request: CreateRequest, key: MasterKey
) -> DeploymentRecord:
    ca_cert = material.anchors[0]
    ccid = material.ccid
    hosts = request.hosts or {}
    ca_fingerprint = fingerprint(ca_cert)
    certificates = []
    for item in material.components:
        cert, cert_fingerprint = item.certificate, fingerprint(item.certificate)
        context = _seal_context(item.component.folder, ccid, cert_fingerprint)
        certificates.append(
            CertificateRecord(
                component=item.component,
                cert_der=_der(cert),
                key_sealed=key.seal(item.key_pkcs8_der, context),
                serial=serial_hex(cert),
                fingerprint=cert_fingerprint,
                hosts=tuple(hosts.get(item.component, ())),
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
            )
        )
    return DeploymentRecord(
        name=material.name,
        ccid=ccid,
        organization=material.organization,
        key_spec=request.key_spec,
        package_version=material.package_version,
        created_at=material.created_at,
        authority=AuthorityRecord(
            cert_der=_der(ca_cert),
            key_sealed=key.seal(ca_key_der, _seal_context("ca", ccid, ca_fingerprint)),
            serial=serial_hex(ca_cert),
            fingerprint=ca_fingerprint,
            subject=name_text(ca_cert.subject),
            not_before=ca_cert.not_valid_before_utc,
            not_after=ca_cert.not_valid_after_utc,
        ),
        certificates=tuple(certificates),
    )


def _material(record: DeploymentRecord, key: MasterKey, location: str) -> DeploymentMaterial:
    try:
        ca_cert = x509.load_der_x509_certificate(record.authority.cert_der)
        certs = [x509.load_der_x509_certificate(c.cert_der) for c in record.certificates]
    except ValueError:
        raise StoreCorrupt(
            f"{location}: store is corrupt (deployment {record.name}: a certificate does not parse)"
        ) from None
    components = []
    for cert_record, cert in zip(record.certificates, certs, strict=True):
        context = _seal_context(cert_record.component.folder, record.ccid, fingerprint(cert))
        components.append(
            ComponentMaterial(
                cert_record.component, cert, key.unseal(cert_record.key_sealed, context)
            )
        )
    return DeploymentMaterial(
        name=record.name,
        ccid=record.ccid,
        organization=record.organization,
        created_at=record.created_at,
        anchors=(ca_cert,),
        intermediates=(),
        components=tuple(components),
        package_version=record.package_version,
    )


def _view(record: DeploymentRecord) -> DeploymentView:
    return DeploymentView(
        name=record.name,
        ccid=record.ccid,
        organization=record.organization,
        key_spec=record.key_spec,
        created_at=record.created_at,
        package_version=record.package_version,
        ca_subject=record.authority.subject,
        ca_fingerprint_sha256=record.authority.fingerprint,
        ca_not_after=record.authority.not_after,
        components=tuple(
            ComponentView(
                component=cert.component,
                serial=cert.serial,
                fingerprint_sha256=cert.fingerprint,
                hosts=cert.hosts,
                not_before=cert.not_before,
                not_after=cert.not_after,
            )
            for cert in record.certificates
        ),
    )


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def merge_hosts(
    pairs: Iterable[tuple[str, Sequence[Host]]],
) -> dict[Component, tuple[Host, ...]]:
    """``--host`` values to hosts per component; ``all`` applies to every component."""
    merged: dict[Component, list[Host]] = {}
    for target, hosts in pairs:
        components = (
            list(Component) if target.strip().lower() == "all" else [Component.parse(target)]
        )
        for component in components:
            bucket = merged.setdefault(component, [])
            bucket.extend(host for host in hosts if host not in bucket)
    return {component: tuple(hosts) for component, hosts in merged.items()}
