"""The store's tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        utc = value.astimezone(dt.UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


store_meta = Table(
    "store_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)

deployments = Table(
    "deployments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("ccid", String(36), nullable=False, unique=True),
    Column("organization", String(64), nullable=False),
    Column("key_type", String(16), nullable=False),
    Column("package_version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

authorities = Table(
    "authorities",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment_id", ForeignKey("deployments.id", ondelete="CASCADE"), nullable=False),
    Column("serial", String(42), nullable=False),
    Column("fingerprint", String(64), nullable=False, unique=True),
    Column("subject", Text, nullable=False),
    Column("cert_der", LargeBinary, nullable=False),
    Column("key_sealed", LargeBinary, nullable=False),
    Column("not_before", UtcDateTime, nullable=False),
    Column("not_after", UtcDateTime, nullable=False),
    Column("status", String(16), nullable=False),
)

certificates = Table(
    "certificates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment_id", ForeignKey("deployments.id", ondelete="CASCADE"), nullable=False),
    Column("authority_id", ForeignKey("authorities.id"), nullable=False),
    Column("component", String(16), nullable=False),
    Column("serial", String(42), nullable=False),
    Column("fingerprint", String(64), nullable=False, unique=True),
    Column("hosts", Text, nullable=False),
    Column("cert_der", LargeBinary, nullable=False),
    Column("key_sealed", LargeBinary, nullable=True),  # None: the key is on the component's host
    Column("not_before", UtcDateTime, nullable=False),
    Column("not_after", UtcDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    UniqueConstraint("authority_id", "serial", name="uq_certificates_authority_serial"),
)
