"""The store's core: open a database, its transactions and its errors."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

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

from certserver.errors import (
    CertserverError,
    DeploymentNotFound,
    StoreCorrupt,
    StoreError,
    StoreLocked,
    StoreMissing,
)
from certserver.files import create_secret_file
from certserver.identity import DeploymentName
from certserver.store import migrate

# records
from certserver.store.tables import (
    deployments,
    store_meta,
)

_BACKENDS = ("sqlite", "postgresql")
_LOCK = 0x63657274  # pg advisory lock id for schema changes ("cert")
_MASTER_KEY_ID = "master_key_id"
_READ_ONLY = "certserver_read_only"  # execution option: see Store.reading


class StoreCore:
    """The connection to SQLite or PostgreSQL: opening (and migrating), transactions, locks,
    errors. The repository's parts build on it."""

    def __init__(
        self, engine: Engine, location: str, *, busy_timeout: float = 5.0, sqlite: bool = False
    ) -> None:
        self.engine = engine
        self.location = location
        self.busy_timeout = busy_timeout
        #: SQLite: this process's writers queue here (see :meth:`_one_writer`)
        self._writers = threading.RLock() if sqlite else None

    @classmethod
    def open(cls, url: str, *, create: bool, busy_timeout: float = 5.0) -> Self:
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
