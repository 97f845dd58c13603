"""The store: one class over SQLAlchemy Core, returning plain records."""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    IntegrityError,
    NoResultFound,
    NoSuchModuleError,
)

from certserver.accounts import Credential, CredentialKind, Forbidden, Role
from certserver.audit import AuditEntry
from certserver.errors import (
    CertserverError,
    DeploymentExists,
    DeploymentNotFound,
    InvalidInput,
    StoreCorrupt,
    StoreError,
    StoreLocked,
    StoreMissing,
)
from certserver.files import create_secret_file
from certserver.hosts import Host
from certserver.identity import Ccid, Component, DeploymentName
from certserver.keys import KeySpec
from certserver.profiles import CaMode
from certserver.store import migrate
from certserver.store.tables import (
    audit_log,
    authorities,
    certificates,
    credentials,
    crls,
    deployments,
    links,
    pending_keys,
    revocations,
    store_meta,
    trust_certificates,
)


class Status(enum.StrEnum):
    """Where a certificate (or an authority) stands; stored as its value."""

    ACTIVE = "active"  # in the deployment's package
    ISSUED = "issued"  # signed for a key held elsewhere (sign-csr); not in the package
    REVOKED = "revoked"  # listed in its authority's CRL
    SUPERSEDED = "superseded"  # renewed: a newer certificate of the same identity replaced it
    RETIRING = "retiring"  # an authority being rotated out: still trusted, no longer signing
    RETIRED = "retired"  # an authority rotated out: no longer trusted


class DeploymentState(enum.StrEnum):
    READY = "ready"  # its package can be made
    PENDING = "pending"  # waiting for certificates an enterprise CA signs


class TrustKind(enum.StrEnum):
    ANCHOR = "anchor"
    INTERMEDIATE = "intermediate"


ACTIVE = Status.ACTIVE
_CA_ROLE = "ca"
_BACKENDS = ("sqlite", "postgresql")
_LOCK = 0x63657274  # pg advisory lock id for schema changes ("cert")
_MASTER_KEY_ID = "master_key_id"
_READ_ONLY = "certserver_read_only"  # execution option: see Store.reading


@dataclass(frozen=True, slots=True)
class AuthorityRecord:
    cert_der: bytes
    key_sealed: bytes
    serial: str
    fingerprint: str
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    status: Status = ACTIVE


@dataclass(frozen=True, slots=True)
class CertificateRecord:
    component: Component
    cert_der: bytes
    key_sealed: bytes
    serial: str
    fingerprint: str
    hosts: tuple[Host, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    status: Status = ACTIVE


@dataclass(frozen=True, slots=True)
class PendingKeyRecord:
    """A key certserver made, and its CSR, waiting for an enterprise CA's certificate."""

    component: Component | None  # None: the deployment CA's key
    public_key_sha256: str
    csr_der: bytes
    key_sealed: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class TrustRecord:
    """One of an enterprise's certificates a deployment's chain goes through."""

    kind: TrustKind
    cert_der: bytes
    fingerprint: str


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """Components of a deployment that accept a linked deployment (by its trust bundle)."""

    ccid: Ccid
    name: DeploymentName
    bundle_pem: bytes
    components: tuple[Component, ...]
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    name: DeploymentName
    ccid: Ccid
    organization: str
    key_spec: KeySpec
    package_version: int
    created_at: dt.datetime
    #: The deployment CA certserver holds the key of (None: pending, or enterprise-leaf).
    authority: AuthorityRecord | None
    certificates: tuple[CertificateRecord, ...]
    ca_mode: CaMode = CaMode.CERTSERVER
    state: DeploymentState = DeploymentState.READY
    validity_days: int | None = None
    hosts: Mapping[Component, tuple[Host, ...]] = field(default_factory=dict)
    trust: tuple[TrustRecord, ...] = ()
    pending: tuple[PendingKeyRecord, ...] = ()
    links: tuple[LinkRecord, ...] = ()
    #: The CA being rotated out: still trusted, no longer signing (``ca rotate``).
    retiring: AuthorityRecord | None = None

    def anchors(self) -> tuple[TrustRecord, ...]:
        return tuple(t for t in self.trust if t.kind is TrustKind.ANCHOR)

    def intermediates(self) -> tuple[TrustRecord, ...]:
        return tuple(t for t in self.trust if t.kind is TrustKind.INTERMEDIATE)


@dataclass(frozen=True, slots=True)
class DeploymentQuery:
    """Which deployments to list: filters, and a page (in name order)."""

    state: DeploymentState | None = None
    ca_mode: CaMode | None = None
    name_prefix: str | None = None
    limit: int | None = None
    offset: int = 0


@dataclass(frozen=True, slots=True)
class DeploymentSummary:
    name: DeploymentName
    ccid: Ccid
    key_spec: KeySpec
    created_at: dt.datetime
    next_expiry: dt.datetime | None
    ca_mode: CaMode = CaMode.CERTSERVER
    state: DeploymentState = DeploymentState.READY


class Store:
    """Deployments, authorities and certificates in SQLite or PostgreSQL."""

    def __init__(
        self, engine: Engine, location: str, *, busy_timeout: float = 5.0, sqlite: bool = False
    ) -> None:
        self.engine = engine
        self.location = location
        self.busy_timeout = busy_timeout
        #: SQLite: this process's writers queue here (see :meth:`_one_writer`)
        self._writers = threading.RLock() if sqlite else None

    @classmethod
    def open(cls, url: str, *, create: bool, busy_timeout: float = 5.0) -> Store:
        """Open the store at ``url``; ``create`` allows making a new one (and migrating)."""
        try:
            parsed = make_url(url)
            location = _safe_location(parsed)
        except (ArgumentError, ValueError):
            raise StoreError("CERTSERVER_DATABASE_URL is not a database URL") from None
        backend = parsed.get_backend_name()
        if backend not in _BACKENDS:
            raise StoreError(f"{location}: unsupported database (use sqlite or postgresql)")
        if backend == "sqlite":
            location = _prepare_sqlite(parsed, create=create)
            engine = sa.create_engine(parsed, connect_args={"timeout": busy_timeout})
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
        else:
            try:
                engine = sa.create_engine(parsed, connect_args={"connect_timeout": 10})
            except (ArgumentError, NoSuchModuleError, ImportError, ValueError):
                raise StoreError(f"{location}: unsupported database driver or URL") from None
        store = cls(engine, location, busy_timeout=busy_timeout, sqlite=backend == "sqlite")
        with store._errors(), engine.begin() as connection:
            if create and backend == "postgresql":
                # one migrator at a time; SQLite's BEGIN IMMEDIATE already serialises writers
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
            if not create and migrate.current_revision(connection) is None:
                raise StoreMissing(f"{location}: no certificate store here (nothing created yet)")
            migrate.upgrade(connection)
        return store

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn driver errors into one-line store errors that name the store."""
        try:
            yield
        except IntegrityError:
            raise
        except DatabaseError as exc:  # OperationalError included
            text = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
            if "locked" in text or "busy" in text:
                raise StoreLocked(f"{self.location}: store is locked by another process") from None
            if "malformed" in text or "not a database" in text:
                raise StoreCorrupt(f"{self.location}: store is corrupt ({text})") from None
            raise StoreError(f"{self.location}: {text}") from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self._one_writer(), self._errors(), self.engine.begin() as connection:
            yield connection

    @contextlib.contextmanager
    def _one_writer(self) -> Iterator[None]:
        """On SQLite, one write transaction at a time in this process, the others waiting
        on a lock that wakes them as soon as it is free. (Left to SQLite, threads that find
        the store locked sleep in its busy handler, up to 100 ms between tries, while the
        lock is held for about a millisecond.) Other processes still meet the busy timeout.
        """
        if self._writers is None:
            yield
            return
        if not self._writers.acquire(timeout=self.busy_timeout):
            raise StoreLocked(f"{self.location}: store is locked by another writer")
        try:
            yield
        finally:
            self._writers.release()

    @contextlib.contextmanager
    def reading(self) -> Iterator[Connection]:
        """A transaction that only reads. On SQLite it begins DEFERRED, so (in WAL mode) it
        neither waits for a writer nor holds one up; every other transaction takes the
        write lock at its start (see :func:`_sqlite_begin`)."""
        with self._errors(), self.engine.connect() as connection:
            connection.execution_options(**{_READ_ONLY: True})
            with connection.begin():
                yield connection

    def master_key_id(self) -> str | None:
        with self.reading() as connection:
            return connection.scalar(
                sa.select(store_meta.c.value).where(store_meta.c.key == _MASTER_KEY_ID)
            )

    def claim_master_key_id(self, key_id: str) -> str:
        """Record ``key_id`` as this store's master key unless one is; return the recorded one.

        Two first uses at once both get the one that won.
        """
        try:
            with self.transaction() as connection:
                current = connection.scalar(
                    sa.select(store_meta.c.value).where(store_meta.c.key == _MASTER_KEY_ID)
                )
                if current is not None:
                    return str(current)
                connection.execute(sa.insert(store_meta).values(key=_MASTER_KEY_ID, value=key_id))
                return key_id
        except IntegrityError:
            recorded = self.master_key_id()
            assert recorded is not None
            return recorded

    def deployment_exists(self, name: DeploymentName) -> bool:
        with self.reading() as connection:
            found = connection.scalar(
                sa.select(deployments.c.id).where(deployments.c.name == name.value)
            )
        return found is not None

    def add_deployment(self, connection: Connection, record: DeploymentRecord) -> None:
        """Insert a deployment with everything it holds on ``connection``."""
        try:
            deployment_key = connection.execute(
                sa.insert(deployments).values(
                    name=record.name.value,
                    ccid=record.ccid.value,
                    organization=record.organization,
                    key_type=record.key_spec.value,
                    package_version=record.package_version,
                    created_at=record.created_at,
                    ca_mode=record.ca_mode,
                    state=record.state,
                    validity_days=record.validity_days,
                    hosts=_hosts_json(record.hosts),
                )
            ).inserted_primary_key
        except IntegrityError:
            raise DeploymentExists(f"deployment {record.name} already exists") from None
        assert deployment_key is not None
        deployment_id = deployment_key[0]
        if record.pending:
            connection.execute(
                sa.insert(pending_keys),
                [
                    {
                        "deployment_id": deployment_id,
                        "role": _role(item.component),
                        "public_key_sha256": item.public_key_sha256,
                        "csr_der": item.csr_der,
                        "key_sealed": item.key_sealed,
                    }
                    for item in record.pending
                ],
            )
        self._add_signed(
            connection, deployment_id, record.authority, record.trust, record.certificates
        )

    def _add_signed(
        self,
        connection: Connection,
        deployment_id: object,
        authority: AuthorityRecord | None,
        trust: Sequence[TrustRecord],
        certs: Sequence[CertificateRecord],
    ) -> None:
        """Insert an authority, replace the trust rows, insert certificates (under that
        authority, or under none when an enterprise CA signed them)."""
        authority_id = None
        if authority is not None:
            authority_key = connection.execute(
                sa.insert(authorities).values(**_authority_row(deployment_id, authority))
            ).inserted_primary_key
            assert authority_key is not None
            authority_id = authority_key[0]
        if trust:
            connection.execute(
                sa.delete(trust_certificates).where(
                    trust_certificates.c.deployment_id == deployment_id
                )
            )
            connection.execute(
                sa.insert(trust_certificates),
                [
                    {
                        "deployment_id": deployment_id,
                        "kind": item.kind,
                        "position": position,
                        "fingerprint": item.fingerprint,
                        "cert_der": item.cert_der,
                    }
                    for position, item in enumerate(trust)
                ],
            )
        if certs:
            connection.execute(
                sa.insert(certificates),
                [_certificate_row(deployment_id, authority_id, cert) for cert in certs],
            )

    def import_signed(
        self,
        connection: Connection,
        name: DeploymentName,
        *,
        authority: AuthorityRecord | None,
        trust: Sequence[TrustRecord],
        certs: Sequence[CertificateRecord],
        resolved: Sequence[Component | None],
    ) -> DeploymentState:
        """Record on ``connection`` what an enterprise CA signed for a pending deployment:
        the ``resolved`` pending keys become ``certs`` (and ``authority``). The deployment is
        ready once no key is pending.
        """
        row = connection.execute(
            sa.select(deployments.c.id, deployments.c.state)
            .where(deployments.c.name == name.value)
            .with_for_update()
        ).one_or_none()
        if row is None:
            raise DeploymentNotFound(f"no deployment named {name}")
        if row.state != DeploymentState.PENDING:
            raise InvalidInput(f"deployment {name} has nothing pending to import")
        roles = [_role(component) for component in resolved]
        removed = connection.execute(
            sa.delete(pending_keys).where(
                pending_keys.c.deployment_id == row.id, pending_keys.c.role.in_(roles)
            )
        ).rowcount
        if removed != len(roles):
            raise InvalidInput(f"deployment {name} changed meanwhile; run the import again")
        self._add_signed(connection, row.id, authority, trust, certs)
        left = connection.scalar(
            sa.select(sa.func.count())
            .select_from(pending_keys)
            .where(pending_keys.c.deployment_id == row.id)
        )
        state = DeploymentState.PENDING if left else DeploymentState.READY
        connection.execute(
            sa.update(deployments).where(deployments.c.id == row.id).values(state=state)
        )
        return state

    @contextlib.contextmanager
    def _decoding(self, what: str) -> Iterator[None]:
        """Rows that do not decode into records mean a damaged store, not a bug."""
        try:
            yield
        except (DeploymentNotFound, StoreError):
            raise
        except (ValueError, KeyError, TypeError, CertserverError, NoResultFound) as exc:
            reason = exc.message if isinstance(exc, CertserverError) else type(exc).__name__
            raise StoreCorrupt(f"{self.location}: store is corrupt ({what}: {reason})") from None

    def add_issued(
        self,
        name: DeploymentName,
        record: CertificateRecord,
        audit: AuditEntry | None = None,
        supersedes: str | None = None,
    ) -> None:
        """Record a certificate the deployment's CA signed for a key it never saw (and
        ``audit``, the entry that says so, in the same transaction). ``supersedes``: the
        fingerprint of the certificate it replaces (self-renewal), which must still be
        current and is no longer after this."""
        with self.transaction() as connection:
            if supersedes is not None:
                replaced = connection.execute(
                    sa.update(certificates)
                    .where(
                        certificates.c.fingerprint == supersedes,
                        certificates.c.status.in_([ACTIVE, Status.ISSUED]),
                    )
                    .values(status=Status.SUPERSEDED)
                ).rowcount
                if replaced != 1:
                    raise Forbidden("this certificate was renewed or revoked meanwhile")
            row = connection.execute(
                sa.select(deployments.c.id, authorities.c.id.label("authority_id"))
                .select_from(deployments)
                .outerjoin(
                    authorities,
                    sa.and_(
                        authorities.c.deployment_id == deployments.c.id,
                        authorities.c.status == ACTIVE,
                    ),
                )
                .where(deployments.c.name == name.value)
            ).one_or_none()
            if row is None:
                raise DeploymentNotFound(f"no deployment named {name}")
            if row.authority_id is None:
                raise InvalidInput(f"deployment {name} has no CA of certserver's to sign with")
            values = _certificate_row(row.id, row.authority_id, record)
            values.update(key_sealed=None, status=Status.ISSUED)  # the key is not ours to keep
            connection.execute(sa.insert(certificates).values(**values))
            if audit is not None:
                self.add_audit(audit, connection)

    def get_deployment(self, name: DeploymentName) -> DeploymentRecord:
        with self._decoding(f"deployment {name}"):
            return self._get_deployment(name)

    def signing_record(self, name: DeploymentName, component: Component) -> DeploymentRecord:
        """What signing a CSR for ``component`` reads: the deployment with its active
        authority and only that component's active certificate; no trust rows, pending keys
        or links (unless it has no authority: then all of it, for the error to say why)."""
        with self._decoding(f"deployment {name}"):
            record = self._get_deployment(name, only=component)
        return record if record.authority is not None else self.get_deployment(name)

    def _get_deployment(
        self, name: DeploymentName, only: Component | None = None
    ) -> DeploymentRecord:
        with self.reading() as connection:
            row = connection.execute(
                sa.select(deployments).where(deployments.c.name == name.value)
            ).one_or_none()
            if row is None:
                raise DeploymentNotFound(f"no deployment named {name}")
            ca = connection.execute(
                sa.select(authorities).where(
                    authorities.c.deployment_id == row.id, authorities.c.status == ACTIVE
                )
            ).one_or_none()
            retiring = connection.execute(
                sa.select(authorities).where(
                    authorities.c.deployment_id == row.id,
                    authorities.c.status == Status.RETIRING,
                )
            ).one_or_none()
            mine = sa.select(certificates).where(
                certificates.c.deployment_id == row.id, certificates.c.status == ACTIVE
            )
            if only is not None:
                mine = mine.where(certificates.c.component == only.folder)
            certs = connection.execute(mine.order_by(certificates.c.id)).all()
            trust: Sequence[sa.Row[tuple[object, ...]]] = ()
            pending: Sequence[sa.Row[tuple[object, ...]]] = ()
            linked: Sequence[sa.Row[tuple[object, ...]]] = ()
            if only is None:
                trust = connection.execute(
                    sa.select(trust_certificates)
                    .where(trust_certificates.c.deployment_id == row.id)
                    .order_by(trust_certificates.c.kind, trust_certificates.c.position)
                ).all()
                pending = connection.execute(
                    sa.select(pending_keys)
                    .where(pending_keys.c.deployment_id == row.id)
                    .order_by(pending_keys.c.id)
                ).all()
                linked = connection.execute(
                    sa.select(links).where(links.c.deployment_id == row.id).order_by(links.c.ccid)
                ).all()
        return DeploymentRecord(
            name=DeploymentName(row.name),
            ccid=Ccid(row.ccid),
            organization=row.organization,
            key_spec=KeySpec(row.key_type),
            package_version=row.package_version,
            created_at=row.created_at,
            authority=None if ca is None else _authority(ca),
            retiring=None if retiring is None else _authority(retiring),
            certificates=tuple(_certificate(cert) for cert in certs),
            ca_mode=CaMode(row.ca_mode),
            state=DeploymentState(row.state),
            validity_days=row.validity_days,
            hosts=_hosts_from_json(row.hosts),
            trust=tuple(TrustRecord(TrustKind(t.kind), t.cert_der, t.fingerprint) for t in trust),
            pending=tuple(
                PendingKeyRecord(
                    component=None if p.role == _CA_ROLE else Component.from_folder(p.role),
                    public_key_sha256=p.public_key_sha256,
                    csr_der=p.csr_der,
                    key_sealed=p.key_sealed,
                )
                for p in pending
            ),
            links=tuple(
                LinkRecord(
                    ccid=Ccid(link.ccid),
                    name=DeploymentName(link.name),
                    bundle_pem=link.bundle_pem,
                    components=tuple(Component.from_folder(c) for c in json.loads(link.components)),
                    created_at=link.created_at,
                )
                for link in linked
            ),
        )

    def put_link(self, name: DeploymentName, link: LinkRecord) -> bool:
        """Add (or replace) a link of deployment ``name``; True when it replaced one. The
        package version goes up: the next package differs."""
        with self.transaction() as connection:
            deployment_id = self._bump(connection, name)
            removed = connection.execute(
                sa.delete(links).where(
                    links.c.deployment_id == deployment_id, links.c.ccid == link.ccid.value
                )
            ).rowcount
            connection.execute(
                sa.insert(links).values(
                    deployment_id=deployment_id,
                    ccid=link.ccid.value,
                    name=link.name.value,
                    bundle_pem=link.bundle_pem,
                    components=json.dumps([c.folder for c in link.components]),
                    created_at=link.created_at,
                )
            )
        return bool(removed)

    def remove_link(self, name: DeploymentName, linked: str) -> LinkRecord | None:
        """Remove the link to ``linked`` (a deployment name or CCID); the removed link."""
        record = self.get_deployment(name)
        found = next(
            (link for link in record.links if linked in (link.ccid.value, link.name.value)), None
        )
        if found is None:
            return None
        with self.transaction() as connection:
            deployment_id = self._bump(connection, name)
            connection.execute(
                sa.delete(links).where(
                    links.c.deployment_id == deployment_id, links.c.ccid == found.ccid.value
                )
            )
        return found

    def _bump(self, connection: Connection, name: DeploymentName) -> object:
        row = connection.execute(
            sa.select(deployments.c.id).where(deployments.c.name == name.value)
        ).one_or_none()
        if row is None:
            raise DeploymentNotFound(f"no deployment named {name}")
        connection.execute(
            sa.update(deployments)
            .where(deployments.c.id == row.id)
            .values(package_version=deployments.c.package_version + 1)
        )
        return row.id

    def list_deployments(self, query: DeploymentQuery | None = None) -> Sequence[DeploymentSummary]:
        with self._decoding("deployments"):
            return self._list_deployments(query or DeploymentQuery())

    def count_deployments(self, query: DeploymentQuery | None = None) -> int:
        with self.transaction() as connection:
            count = sa.select(sa.func.count()).select_from(deployments)
            return int(connection.scalar(_filtered(count, query or DeploymentQuery())) or 0)

    def _list_deployments(self, query: DeploymentQuery) -> Sequence[DeploymentSummary]:
        expiry = (
            sa.select(sa.func.min(certificates.c.not_after))
            .where(
                certificates.c.deployment_id == deployments.c.id,
                certificates.c.status == ACTIVE,
            )
            .scalar_subquery()
        )
        with self.reading() as connection:
            rows = connection.execute(
                sa.select(
                    deployments.c.name,
                    deployments.c.ccid,
                    deployments.c.key_type,
                    deployments.c.created_at,
                    deployments.c.ca_mode,
                    deployments.c.state,
                    expiry.label("next_expiry"),
                )
                .where(*_conditions(query))
                .order_by(deployments.c.name)
                .limit(query.limit)
                .offset(query.offset)
            ).all()
        return [
            DeploymentSummary(
                name=DeploymentName(row.name),
                ccid=Ccid(row.ccid),
                key_spec=KeySpec(row.key_type),
                created_at=row.created_at,
                next_expiry=_aware(row.next_expiry),
                ca_mode=CaMode(row.ca_mode),
                state=DeploymentState(row.state),
            )
            for row in rows
        ]

    def rotate_authority(
        self, connection: Connection, name: DeploymentName, new: AuthorityRecord
    ) -> int:
        """On ``connection``: the active authority becomes retiring and ``new`` the active
        one; the package version goes up (returned)."""
        row = self._locked_deployment(connection, name)
        if connection.scalar(
            sa.select(sa.func.count())
            .select_from(authorities)
            .where(authorities.c.deployment_id == row.id, authorities.c.status == Status.RETIRING)
        ):
            raise InvalidInput(
                f"deployment {name} is rotating its CA already: finish that first "
                f"(certserver ca finish-rotation {name})"
            )
        connection.execute(
            sa.update(authorities)
            .where(authorities.c.deployment_id == row.id, authorities.c.status == ACTIVE)
            .values(status=Status.RETIRING)
        )
        connection.execute(
            sa.insert(authorities).values(**_authority_row(row.id, new, status=ACTIVE))
        )
        return self._bump_version(connection, row)

    def finish_rotation(self, connection: Connection, name: DeploymentName) -> int:
        """The retiring authority is retired (no longer trusted), once no active certificate
        comes from it; the package version goes up (returned)."""
        row = self._locked_deployment(connection, name)
        retiring = connection.scalar(
            sa.select(authorities.c.id).where(
                authorities.c.deployment_id == row.id, authorities.c.status == Status.RETIRING
            )
        )
        if retiring is None:
            raise InvalidInput(f"deployment {name} is not rotating its CA")
        left = connection.execute(
            sa.select(certificates.c.component).where(
                certificates.c.authority_id == retiring,
                certificates.c.status.in_([ACTIVE, Status.ISSUED]),
            )
        ).all()
        if left:
            names = ", ".join(sorted({r.component for r in left}))
            raise InvalidInput(
                f"certificates of the old CA are still in use ({names}): renew them first "
                f"(certserver renew {name})"
            )
        connection.execute(
            sa.update(authorities).where(authorities.c.id == retiring).values(status=Status.RETIRED)
        )
        return self._bump_version(connection, row)

    def _locked_deployment(self, connection: Connection, name: DeploymentName) -> Any:
        row = connection.execute(
            sa.select(deployments.c.id, deployments.c.package_version)
            .where(deployments.c.name == name.value)
            .with_for_update()
        ).one_or_none()
        if row is None:
            raise DeploymentNotFound(f"no deployment named {name}")
        return row

    def _bump_version(self, connection: Connection, row: Any) -> int:
        version = int(row.package_version) + 1
        connection.execute(
            sa.update(deployments).where(deployments.c.id == row.id).values(package_version=version)
        )
        return version

    def replace_certificates(
        self, connection: Connection, name: DeploymentName, new: Sequence[CertificateRecord]
    ) -> int:
        """On ``connection``: the active certificates of ``new``'s components become
        superseded, ``new`` takes their place, and the package version goes up (returned)."""
        row = self._locked_deployment(connection, name)
        authority_id = connection.scalar(
            sa.select(authorities.c.id).where(
                authorities.c.deployment_id == row.id, authorities.c.status == ACTIVE
            )
        )
        connection.execute(
            sa.update(certificates)
            .where(
                certificates.c.deployment_id == row.id,
                certificates.c.status == ACTIVE,
                certificates.c.component.in_([cert.component.folder for cert in new]),
            )
            .values(status=Status.SUPERSEDED)
        )
        connection.execute(
            sa.insert(certificates), [_certificate_row(row.id, authority_id, c) for c in new]
        )
        return self._bump_version(connection, row)

    # -- revocation -------------------------------------------------------------------------

    def revoke(
        self,
        connection: Connection,
        name: DeploymentName,
        *,
        serial: str | None,
        component: Component | None,
        reason: str,
        at: dt.datetime,
    ) -> tuple[list[str], list[str]]:
        """Revoke, on ``connection``: the certificate of deployment ``name`` with ``serial``,
        or every current certificate (packaged, or issued for a key held elsewhere) of
        ``component``, from the deployment's CA or the one being rotated out. Returns the
        revoked serials and the fingerprints of the authorities whose CRL changes."""
        row = self._locked_deployment(connection, name)
        ours = [
            (r.id, r.fingerprint)
            for r in connection.execute(
                sa.select(authorities.c.id, authorities.c.fingerprint).where(
                    authorities.c.deployment_id == row.id,
                    authorities.c.status.in_([ACTIVE, Status.RETIRING]),
                )
            )
        ]
        if not ours:
            raise InvalidInput(
                f"deployment {name} has no CA of certserver's: revoke its certificates at the "
                "enterprise CA that signed them"
            )
        ids = [authority_id for authority_id, _ in ours]
        query = sa.select(
            certificates.c.id,
            certificates.c.serial,
            certificates.c.status,
            certificates.c.authority_id,
        ).where(certificates.c.authority_id.in_(ids))
        if serial is not None:
            query = query.where(certificates.c.serial == serial.lower().lstrip("0"))
        else:
            assert component is not None
            query = query.where(
                certificates.c.component == component.folder,
                certificates.c.status.in_([ACTIVE, Status.ISSUED]),
            )
        found = connection.execute(query).all()
        if not found:
            if serial is not None:
                raise InvalidInput(f"deployment {name} has no certificate with serial {serial}")
            raise InvalidInput(
                f"{component} of deployment {name} has no current certificate (already revoked?)"
            )
        if all(cert.status == Status.REVOKED for cert in found):
            raise InvalidInput(f"certificate {found[0].serial} of {name} is already revoked")
        todo = [cert for cert in found if cert.status != Status.REVOKED]
        connection.execute(
            sa.update(certificates)
            .where(certificates.c.id.in_([cert.id for cert in todo]))
            .values(status=Status.REVOKED)
        )
        connection.execute(
            sa.insert(revocations),
            [
                {
                    "authority_id": cert.authority_id,
                    "serial": cert.serial,
                    "reason": reason,
                    "revoked_at": at,
                }
                for cert in todo
            ],
        )
        touched = {cert.authority_id for cert in todo}
        return [cert.serial for cert in todo], [fp for i, fp in ours if i in touched]

    def crl_authorities(self, name: DeploymentName) -> list[str]:
        """Fingerprints of the CAs whose CRLs the deployment publishes: the active one,
        then the one being rotated out."""
        with self.reading() as connection:
            rows = connection.execute(
                sa.select(authorities.c.fingerprint, authorities.c.status)
                .join(deployments, deployments.c.id == authorities.c.deployment_id)
                .where(
                    deployments.c.name == name.value,
                    authorities.c.status.in_([ACTIVE, Status.RETIRING]),
                )
            ).all()
        return [r.fingerprint for r in sorted(rows, key=lambda r: r.status != ACTIVE)]

    def crl_state(
        self, connection: Connection, authority_fingerprint: str
    ) -> tuple[int, list[tuple[str, dt.datetime, str]]]:
        """On ``connection`` (locked): the next CRL number (above every CRL of the
        deployment, across CA rotations) and every revocation of that authority."""
        authority = connection.execute(
            sa.select(authorities.c.id, authorities.c.deployment_id).where(
                authorities.c.fingerprint == authority_fingerprint
            )
        ).one()
        highest = connection.scalar(
            sa.select(sa.func.max(crls.c.number))
            .join(authorities, authorities.c.id == crls.c.authority_id)
            .where(authorities.c.deployment_id == authority.deployment_id)
        )
        listed = connection.execute(
            sa.select(revocations.c.serial, revocations.c.revoked_at, revocations.c.reason)
            .where(revocations.c.authority_id == authority.id)
            .order_by(revocations.c.id)
        ).all()
        return int(highest or 0) + 1, [(r.serial, r.revoked_at, r.reason) for r in listed]

    def put_crl(
        self,
        connection: Connection,
        authority_fingerprint: str,
        number: int,
        this_update: dt.datetime,
        next_update: dt.datetime,
        der: bytes,
    ) -> None:
        authority_id = connection.scalar(
            sa.select(authorities.c.id).where(authorities.c.fingerprint == authority_fingerprint)
        )
        connection.execute(sa.delete(crls).where(crls.c.authority_id == authority_id))
        connection.execute(
            sa.insert(crls).values(
                authority_id=authority_id,
                number=number,
                this_update=this_update,
                next_update=next_update,
                crl_der=der,
            )
        )

    def latest_crl(self, authority_fingerprint: str) -> tuple[int, dt.datetime, bytes] | None:
        """An authority's latest CRL: its number, next update and DER."""
        with self.reading() as connection:
            row = connection.execute(
                sa.select(crls.c.number, crls.c.next_update, crls.c.crl_der)
                .join(authorities, authorities.c.id == crls.c.authority_id)
                .where(authorities.c.fingerprint == authority_fingerprint)
            ).one_or_none()
        return None if row is None else (row.number, row.next_update, row.crl_der)

    def crl_der(self, connection: Connection, authority_fingerprint: str) -> bytes:
        der = connection.scalar(
            sa.select(crls.c.crl_der)
            .join(authorities, authorities.c.id == crls.c.authority_id)
            .where(authorities.c.fingerprint == authority_fingerprint)
        )
        assert der is not None, "a CRL just stored"
        return bytes(der)

    def lock_deployment(self, connection: Connection, name: DeploymentName) -> None:
        """Hold deployment ``name`` for the rest of the transaction (its CRLs are remade)."""
        self._locked_deployment(connection, name)

    def certificate_by_fingerprint(
        self, cert_fingerprint: str
    ) -> tuple[DeploymentName, Status] | None:
        """Whose certificate this is, and where it stands."""
        with self.transaction() as connection:
            row = connection.execute(
                sa.select(deployments.c.name, certificates.c.status)
                .join(deployments, deployments.c.id == certificates.c.deployment_id)
                .where(certificates.c.fingerprint == cert_fingerprint)
            ).one_or_none()
        return None if row is None else (DeploymentName(row.name), Status(row.status))

    def signing_authorities(self) -> list[tuple[DeploymentName, str, bytes]]:
        """Every CA certserver signs with or still answers for (active and retiring): its
        deployment, fingerprint and certificate."""
        with self.transaction() as connection:
            rows = connection.execute(
                sa.select(deployments.c.name, authorities.c.fingerprint, authorities.c.cert_der)
                .join(deployments, deployments.c.id == authorities.c.deployment_id)
                .where(authorities.c.status.in_([ACTIVE, Status.RETIRING]))
                .order_by(authorities.c.id)
            ).all()
        return [(DeploymentName(r.name), r.fingerprint, r.cert_der) for r in rows]

    def serial_status(
        self, authority_fingerprint: str, serial: str
    ) -> tuple[bool, dt.datetime | None, str | None]:
        """Whether the CA issued ``serial``, and when and why it revoked it (if it did)."""
        with self.transaction() as connection:
            authority_id = connection.scalar(
                sa.select(authorities.c.id).where(
                    authorities.c.fingerprint == authority_fingerprint
                )
            )
            known = connection.scalar(
                sa.select(certificates.c.id).where(
                    certificates.c.authority_id == authority_id,
                    certificates.c.serial == serial,
                )
            )
            revoked = connection.execute(
                sa.select(revocations.c.revoked_at, revocations.c.reason).where(
                    revocations.c.authority_id == authority_id, revocations.c.serial == serial
                )
            ).one_or_none()
        if revoked is None:
            return known is not None, None, None
        return True, revoked.revoked_at, revoked.reason

    def issued_certificates(self, name: DeploymentName) -> list[CertificateRecord]:
        """Certificates signed for keys held elsewhere (sign-csr), not revoked."""
        with self.transaction() as connection:
            rows = connection.execute(
                sa.select(certificates)
                .join(deployments, deployments.c.id == certificates.c.deployment_id)
                .where(deployments.c.name == name.value, certificates.c.status == Status.ISSUED)
                .order_by(certificates.c.id)
            ).all()
        return [_certificate(row) for row in rows]

    def certificate_counts(self) -> dict[str, int]:
        """How many certificates are in each state, and how many keys wait for a signature."""
        with self.reading() as connection:
            rows = connection.execute(
                sa.select(certificates.c.status, sa.func.count()).group_by(certificates.c.status)
            ).all()
            pending = connection.scalar(sa.select(sa.func.count()).select_from(pending_keys))
        counts = {str(status): int(count) for status, count in rows}
        counts["pending"] = int(pending or 0)
        return counts

    # -- credentials and the audit log ------------------------------------------------------

    def add_credential(self, credential: Credential, secret_sha256: str) -> None:
        with self.transaction() as connection:
            connection.execute(
                sa.insert(credentials).values(
                    credential_id=credential.credential_id,
                    kind=credential.kind,
                    name=credential.name,
                    role=credential.role,
                    secret_sha256=secret_sha256,
                    created_at=credential.created_at,
                    expires_at=credential.expires_at,
                    revoked_at=None,
                )
            )

    def credential_by_digest(self, secret_sha256: str) -> tuple[Credential, str] | None:
        """The credential whose secret (token, or certificate fingerprint) has this digest."""
        with self.reading() as connection:
            row = connection.execute(
                sa.select(credentials).where(credentials.c.secret_sha256 == secret_sha256)
            ).one_or_none()
        return None if row is None else (_credential(row), row.secret_sha256)

    def list_credentials(self) -> list[Credential]:
        with self.reading() as connection:
            rows = connection.execute(sa.select(credentials).order_by(credentials.c.id)).all()
        return [_credential(row) for row in rows]

    def revoke_credential(self, credential_id: str, at: dt.datetime) -> Credential | None:
        with self.transaction() as connection:
            changed = connection.execute(
                sa.update(credentials)
                .where(
                    credentials.c.credential_id == credential_id,
                    credentials.c.revoked_at.is_(None),
                )
                .values(revoked_at=at)
            ).rowcount
            row = connection.execute(
                sa.select(credentials).where(credentials.c.credential_id == credential_id)
            ).one_or_none()
        if row is None or not changed:
            return None
        return _credential(row)

    def add_audit(self, entry: AuditEntry, connection: Connection | None = None) -> None:
        """Write an audit entry: on ``connection`` (the transaction of the change it
        records, committed with it), or in a transaction of its own."""
        if connection is not None:
            connection.execute(sa.insert(audit_log).values(**_audit_row(entry)))
            return
        with self.transaction() as own:
            own.execute(sa.insert(audit_log).values(**_audit_row(entry)))

    def list_audit(self, *, limit: int = 100, offset: int = 0) -> list[AuditEntry]:
        """Newest first."""
        with self.reading() as connection:
            rows = connection.execute(
                sa.select(audit_log)
                .order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
        return [
            AuditEntry(r.at, r.actor, r.action, r.target, r.source, r.result, r.detail)
            for r in rows
        ]

    def count_audit(self) -> int:
        with self.reading() as connection:
            return int(connection.scalar(sa.select(sa.func.count()).select_from(audit_log)) or 0)


def _audit_row(entry: AuditEntry) -> dict[str, object]:
    return {
        "at": entry.at,
        "actor": entry.actor[:128],
        "action": entry.action[:64],
        "target": entry.target[:128],
        "source": entry.source[:64],
        "result": entry.result[:64],
        "detail": entry.detail[:2000],
    }


def _certificate_row(
    deployment_id: object, authority_id: object, cert: CertificateRecord
) -> dict[str, object]:
    return {
        "deployment_id": deployment_id,
        "authority_id": authority_id,
        "component": cert.component.folder,
        "serial": cert.serial,
        "fingerprint": cert.fingerprint,
        "hosts": json.dumps([host.text for host in cert.hosts]),
        "cert_der": cert.cert_der,
        "key_sealed": cert.key_sealed,
        "not_before": cert.not_before,
        "not_after": cert.not_after,
        "status": cert.status,
    }


def _conditions(query: DeploymentQuery) -> list[sa.ColumnElement[bool]]:
    found: list[sa.ColumnElement[bool]] = []
    if query.state is not None:
        found.append(deployments.c.state == query.state)
    if query.ca_mode is not None:
        found.append(deployments.c.ca_mode == query.ca_mode)
    if query.name_prefix:
        escaped = query.name_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        found.append(deployments.c.name.like(f"{escaped}%", escape="\\"))
    return found


def _filtered(select: Any, query: DeploymentQuery) -> Any:
    return select.where(*_conditions(query))


def _authority_row(
    deployment_id: object, authority: AuthorityRecord, *, status: Status | None = None
) -> dict[str, object]:
    return {
        "deployment_id": deployment_id,
        "serial": authority.serial,
        "fingerprint": authority.fingerprint,
        "subject": authority.subject,
        "cert_der": authority.cert_der,
        "key_sealed": authority.key_sealed,
        "not_before": authority.not_before,
        "not_after": authority.not_after,
        "status": status or authority.status,
    }


def _credential(row: sa.Row[tuple[object, ...]]) -> Credential:
    m = row._mapping
    return Credential(
        credential_id=m["credential_id"],
        kind=CredentialKind(m["kind"]),
        name=m["name"],
        role=Role(m["role"]),
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        revoked_at=m["revoked_at"],
    )


def _role(component: Component | None) -> str:
    return _CA_ROLE if component is None else component.folder


def _hosts_json(hosts: Mapping[Component, Sequence[Host]]) -> str:
    return json.dumps({c.folder: [h.text for h in names] for c, names in hosts.items()})


def _hosts_from_json(text: str | None) -> dict[Component, tuple[Host, ...]]:
    if not text:
        return {}
    return {
        Component.from_folder(folder): tuple(Host.parse(name) for name in names)
        for folder, names in json.loads(text).items()
    }


def _authority(ca: sa.Row[tuple[object, ...]]) -> AuthorityRecord:
    m = ca._mapping
    return AuthorityRecord(
        cert_der=m["cert_der"],
        key_sealed=m["key_sealed"],
        serial=m["serial"],
        fingerprint=m["fingerprint"],
        subject=m["subject"],
        not_before=m["not_before"],
        not_after=m["not_after"],
        status=Status(m["status"]),
    )


def _certificate(row: sa.Row[tuple[object, ...]]) -> CertificateRecord:
    m = row._mapping
    return CertificateRecord(
        component=Component.from_folder(m["component"]),
        cert_der=m["cert_der"],
        key_sealed=m["key_sealed"],
        serial=m["serial"],
        fingerprint=m["fingerprint"],
        hosts=tuple(Host.parse(text) for text in json.loads(m["hosts"])),
        not_before=m["not_before"],
        not_after=m["not_after"],
        status=Status(m["status"]),
    )


def _aware(value: object) -> dt.datetime | None:
    """Aggregates bypass the column type; SQLite returns them as naive text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


_SECRET_QUERY_KEYS = frozenset({"password", "passwd", "sslpassword", "sslkey"})


def _safe_location(url: URL) -> str:
    """The URL for messages: passwords masked, also when given as query parameters."""
    query = {
        key: ("REDACTED" if key.lower() in _SECRET_QUERY_KEYS else value)
        for key, value in url.query.items()
    }
    return url.set(query=query).render_as_string(hide_password=True)


def _prepare_sqlite(url: URL, *, create: bool) -> str:
    database = url.database
    if not database or database == ":memory:":
        return "sqlite (in memory)"
    path = Path(database)
    if path.exists():
        if not path.is_file():
            raise StoreCorrupt(f"{path}: store is not a regular file")
        return str(path)
    if not create:
        raise StoreMissing(f"{path}: no certificate store here (nothing created yet)")
    if not path.parent.is_dir():
        raise StoreMissing(f"{path}: directory {path.parent} does not exist")
    create_secret_file(path, b"")
    return str(path)


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    # certserver emits BEGIN itself (see _sqlite_begin), so the driver must not
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    """Every transaction that may write takes the write lock at its start, so
    check-then-write is atomic (two first uses cannot both migrate). Read-only ones
    (:meth:`Store.reading`) begin deferred: in WAL mode they never wait for the lock."""
    if connection.get_execution_options().get(_READ_ONLY):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
