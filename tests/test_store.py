"""The store on SQLite and PostgreSQL: the same behaviour, sealed keys, migrations, master key."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from certserver.config import Settings
from certserver.errors import DeploymentExists, MasterKeyError
from certserver.identity import Component, DeploymentName
from certserver.service import CertServer
from certserver.store import migrate
from certserver.store.tables import certificates, deployments, metadata

from .conftest import create, env_for


def _engine(settings: Settings) -> sa.Engine:
    return sa.create_engine(settings.database_url)


def _count(settings: Settings, table: sa.Table) -> int:
    engine = _engine(settings)
    with engine.connect() as connection:
        value = connection.scalar(sa.select(sa.func.count()).select_from(table))
    engine.dispose()
    return int(value or 0)


def test_create_list_show_export(settings: Settings, out_dir: Path, tmp_path: Path) -> None:
    first = create(settings, "one", out_dir)
    create(settings, "two", out_dir)
    with CertServer(settings) as service:
        names = [s.name.value for s in service.list_deployments()]
        shown = service.show_deployment(DeploymentName("one"))
        again = tmp_path / "again"
        again.mkdir()
        exported = service.export_package(DeploymentName("one"), again, force=False)
    assert names == ["one", "two"]
    assert shown == first.deployment
    assert [c.component for c in shown.components] == list(Component)
    assert exported.read_bytes() == first.package_path.read_bytes()
    assert _count(settings, deployments) == 2
    assert _count(settings, certificates) == 12


def test_the_same_name_twice_is_refused(settings: Settings, out_dir: Path, tmp_path: Path) -> None:
    create(settings, "twice", out_dir)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(DeploymentExists, match="deployment twice already exists"):
        create(settings, "twice", elsewhere)
    assert list(elsewhere.iterdir()) == []
    assert _count(settings, deployments) == 1
    assert _count(settings, certificates) == 6


def test_private_keys_are_sealed_at_rest(settings: Settings, out_dir: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from certserver.masterkey import MasterKey
    from certserver.package import fingerprint
    from certserver.store.tables import authorities

    result = create(settings, "sealed", out_dir)
    engine = _engine(settings)
    with engine.connect() as connection:
        blobs = [bytes(row[0]) for row in connection.execute(sa.select(certificates.c.key_sealed))]
        ca_row = connection.execute(sa.select(authorities)).one()
    engine.dispose()
    with zipfile.ZipFile(result.package_path) as archive:
        keys = [
            serialization.load_pem_private_key(archive.read(name), None).private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            for name in archive.namelist()
            if name.endswith((".key", "_key.pem"))
        ]
    assert len(blobs) == 6 and len(keys) == 6
    pkcs8_prefix = keys[0][:26]  # version + algorithm: the same for every key of a type
    for blob in [*blobs, bytes(ca_row.key_sealed)]:
        assert pkcs8_prefix not in blob
        assert all(key not in blob for key in keys)
    # and the CA's sealed key opens with the master key, bound to the CA certificate
    master = MasterKey.load(settings.master_key_file)
    ca_cert = x509.load_der_x509_certificate(bytes(ca_row.cert_der))
    context = f"certserver:ca:{result.deployment.ccid}:{fingerprint(ca_cert)}".encode()
    ca_key = serialization.load_der_private_key(
        master.unseal(bytes(ca_row.key_sealed), context), None
    )
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert ca_key.public_key().public_bytes(serialization.Encoding.DER, spki) == (
        ca_cert.public_key().public_bytes(serialization.Encoding.DER, spki)
    )


def test_a_wrong_master_key_is_refused(settings: Settings, out_dir: Path, tmp_path: Path) -> None:
    create(settings, "keyed", out_dir)
    other_home = tmp_path / "other-home"
    other = Settings.from_env(env_for(other_home, CERTSERVER_DATABASE_URL=settings.database_url))
    # another home, so another (new) master key file would be made there...
    from certserver.masterkey import MasterKey

    other_home.mkdir(mode=0o700)
    MasterKey.create(other.master_key_file)
    with CertServer(other) as service, pytest.raises(MasterKeyError, match="wrong master key"):
        service.package_bytes(DeploymentName("keyed"))
    # ...and the right one still opens it
    with CertServer(settings) as service:
        assert service.package_bytes(DeploymentName("keyed"))[0] == "keyed_certs.zip"


def test_a_missing_master_key_is_never_replaced(
    settings: Settings, out_dir: Path, tmp_path: Path
) -> None:
    create(settings, "kept", out_dir)
    saved = settings.master_key_file.read_bytes()
    settings.master_key_file.unlink()
    again = tmp_path / "again"
    again.mkdir()
    with CertServer(settings) as service, pytest.raises(MasterKeyError, match="missing"):
        service.export_package(DeploymentName("kept"), again, force=False)
    with pytest.raises(MasterKeyError, match="never makes a new key"):
        create(settings, "new-one", again)
    assert not settings.master_key_file.exists()
    assert list(again.iterdir()) == []
    settings.master_key_file.write_bytes(saved)
    settings.master_key_file.chmod(0o600)
    with CertServer(settings) as service:
        assert [s.name.value for s in service.list_deployments()] == ["kept"]


def test_migrations_build_exactly_the_tables(settings: Settings, out_dir: Path) -> None:
    create(settings, "schema", out_dir)
    engine = _engine(settings)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert context.get_current_revision() == migrate.SCHEMA_HEAD
        assert compare_metadata(context, metadata) == []
    engine.dispose()


def test_schema_head_constant_matches_the_scripts() -> None:
    assert migrate.script_head() == migrate.SCHEMA_HEAD


def test_a_sealed_key_moved_to_another_row_does_not_open(
    settings: Settings, out_dir: Path, tmp_path: Path
) -> None:
    create(settings, "bound", out_dir)
    engine = _engine(settings)
    with engine.begin() as connection:
        rows = {
            row.component: (row.id, row.key_sealed)
            for row in connection.execute(
                sa.select(certificates.c.id, certificates.c.component, certificates.c.key_sealed)
            )
        }
        (ccm_id, ccm_key), (cco_id, cco_key) = rows["ccm"], rows["cco"]
        for row_id, blob in ((ccm_id, cco_key), (cco_id, ccm_key)):
            connection.execute(
                sa.update(certificates).where(certificates.c.id == row_id).values(key_sealed=blob)
            )
    engine.dispose()
    again = tmp_path / "again"
    again.mkdir()
    with CertServer(settings) as service, pytest.raises(MasterKeyError, match="cannot open"):
        service.export_package(DeploymentName("bound"), again, force=False)
    assert list(again.iterdir()) == []


def test_a_store_of_an_older_schema_is_migrated_on_open(settings: Settings, tmp_path: Path) -> None:
    from alembic import command

    from certserver.store import Store

    url = settings.database_url
    if url.startswith("sqlite"):
        settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    engine = _engine(settings)
    with engine.begin() as connection:
        command.upgrade(migrate.alembic_config(connection), "0001")
        assert migrate.current_revision(connection) == "0001"
    engine.dispose()
    store = Store.open(url, create=False)
    store.close()
    engine = _engine(settings)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert context.get_current_revision() == migrate.SCHEMA_HEAD == "0007"
        assert compare_metadata(context, metadata) == []
    engine.dispose()


def test_reading_a_deployment_uses_an_index_not_a_scan_of_every_certificate(
    settings: Settings, out_dir: Path
) -> None:
    create(settings, "indexed", out_dir)
    engine = _engine(settings)
    query = "SELECT id FROM certificates WHERE deployment_id = 1 AND status = 'active'"
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            plan = " ".join(
                str(row[-1]) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}")
            )
        else:
            connection.exec_driver_sql("SET enable_seqscan = off")
            plan = " ".join(str(row[0]) for row in connection.exec_driver_sql(f"EXPLAIN {query}"))
    engine.dispose()
    assert "ix_certificates_deployment_id_status" in plan, plan
