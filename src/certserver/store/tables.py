"""The store's tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
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
    Column("ca_mode", String(32), nullable=False, server_default="certserver"),
    Column("state", String(16), nullable=False, server_default="ready"),
    Column("validity_days", Integer, nullable=True),  # of component certificates
    Column("hosts", Text, nullable=True),  # JSON {component folder: [host, ...]}
)

authorities = Table(
    "authorities",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "deployment_id",
        ForeignKey("deployments.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
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
    # None: signed by an enterprise CA (enterprise-leaf), whose certificate is a trust row
    Column("authority_id", ForeignKey("authorities.id"), nullable=True),
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
    # a deployment's active certificates, found without reading the ones issued for CSRs
    Index("ix_certificates_deployment_id_status", "deployment_id", "status"),
)

#: Keys made by certserver whose certificate an enterprise CA has yet to sign.
pending_keys = Table(
    "pending_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "deployment_id",
        ForeignKey("deployments.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("role", String(16), nullable=False),  # "ca" or a component folder
    Column("public_key_sha256", String(64), nullable=False),
    Column("csr_der", LargeBinary, nullable=False),
    Column("key_sealed", LargeBinary, nullable=False),
    UniqueConstraint("deployment_id", "role", name="uq_pending_keys_deployment_role"),
)

#: An enterprise's trust anchors and intermediates for a deployment, in chain order.
trust_certificates = Table(
    "trust_certificates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "deployment_id",
        ForeignKey("deployments.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("kind", String(16), nullable=False),  # "anchor" or "intermediate"
    Column("position", Integer, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("cert_der", LargeBinary, nullable=False),
    UniqueConstraint("deployment_id", "kind", "position", name="uq_trust_certificates_position"),
)

#: Components of a deployment that accept another deployment's identities (federation).
links = Table(
    "links",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "deployment_id",
        ForeignKey("deployments.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("ccid", String(36), nullable=False),  # the linked deployment's
    Column("name", String(63), nullable=False),
    Column("bundle_pem", LargeBinary, nullable=False),  # its trust bundle, PEM form
    Column("components", Text, nullable=False),  # JSON [component folder, ...]
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("deployment_id", "ccid", name="uq_links_deployment_ccid"),
)

#: Who may use the service: API tokens (their SHA-256 only) and client certificates (their
#: fingerprint), each with a role.
credentials = Table(
    "credentials",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("credential_id", String(32), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # "token" or "client-cert"
    Column("name", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("secret_sha256", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
)

#: Every change and every package download: who, what, when, from where, and the result.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(128), nullable=False),
    Column("source", String(64), nullable=False),
    Column("result", String(64), nullable=False),
    Column("detail", Text, nullable=False),
)

#: Serials an authority revoked (the CRL is built from these in one pass).
revocations = Table(
    "revocations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("authority_id", ForeignKey("authorities.id", ondelete="CASCADE"), nullable=False),
    Column("serial", String(42), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("revoked_at", UtcDateTime, nullable=False),
    UniqueConstraint("authority_id", "serial", name="uq_revocations_authority_serial"),
)

#: Each authority's latest CRL.
crls = Table(
    "crls",
    metadata,
    Column("authority_id", ForeignKey("authorities.id", ondelete="CASCADE"), primary_key=True),
    Column("number", Integer, nullable=False),
    Column("this_update", UtcDateTime, nullable=False),
    Column("next_update", UtcDateTime, nullable=False),
    Column("crl_der", LargeBinary, nullable=False),
)
