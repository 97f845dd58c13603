"""The CSR-signing path of the API, as the benchmark drives it, on SQLite and PostgreSQL:
the answer, the audit entry committed with the change (one per call, also when refused),
the request counter, and readers that do not wait for a writer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from certserver.accounts import Role
from certserver.audit import AuditEntry
from certserver.config import Settings
from certserver.errors import StoreError
from certserver.identity import DeploymentName
from certserver.service import CertServer
from certserver.store import Store
from certserver.store.tables import audit_log, certificates
from certserver.web import create_app

SIGN = "/api/v1/deployments/fast/sign?component=cco"


def csr_pem(*names: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "host")])
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.PEM)


@pytest.fixture
def client(settings: Settings) -> Iterator[tuple[TestClient, CertServer]]:
    service = CertServer(settings)
    _, token = service.create_token("bench", Role.SYSADMIN)
    app = create_app(settings, service=service)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as http:
        made = http.post(
            "/api/v1/deployments", json={"name": "fast", "hosts": {"all": ["localhost"]}}
        )
        assert made.status_code == 201, made.text
        yield http, service
    service.close()


def _rows(settings: Settings, table: sa.Table, *where: sa.ColumnElement[bool]) -> list[sa.Row]:
    engine = sa.create_engine(settings.database_url)
    with engine.connect() as connection:
        rows = list(connection.execute(sa.select(table).where(*where)).all())
    engine.dispose()
    return rows


def test_a_signature_through_the_api_is_recorded_with_one_audit_entry(
    client: tuple[TestClient, CertServer], settings: Settings
) -> None:
    http, _ = client
    csr = csr_pem("localhost")
    for _ in range(3):
        answer = http.post(SIGN, files={"csr": ("cco.csr", csr)})
        assert answer.status_code == 200, answer.text
        cert = x509.load_pem_x509_certificate(answer.content)
        assert cert.public_key() == x509.load_pem_x509_csr(csr).public_key()
    refused = http.post(SIGN, files={"csr": ("cco.csr", csr_pem("elsewhere.example"))})
    assert refused.status_code == 422
    assert refused.json()["code"] == "policy-refused"

    issued = _rows(settings, certificates, certificates.c.status == "issued")
    assert len(issued) == 3
    entries = _rows(settings, audit_log, audit_log.c.action == "certificate.sign-csr")
    assert sorted(e.result for e in entries) == ["ok", "ok", "ok", "policy-refused"]
    assert {e.target for e in entries} == {"fast/cco"}
    assert {e.actor for e in entries} == {entries[0].actor} and "bench" in entries[0].actor

    metrics = http.get("/metrics").text
    assert (
        'certserver_http_requests_total{route="/api/v1/deployments/{name}/sign",'
        'method="POST",status="200"} 3'
    ) in metrics
    assert 'route="/api/v1/deployments/{name}/sign",method="POST",status="422"} 1' in metrics


def test_a_change_whose_audit_entry_cannot_be_written_is_not_made(
    client: tuple[TestClient, CertServer], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``ok`` entry is written in the change's transaction: both or neither."""
    http, _ = client
    real = Store.add_audit

    def failing(self: Store, entry: AuditEntry, connection: sa.Connection | None = None) -> None:
        if connection is not None:  # in the change's transaction
            raise StoreError("audit log is full")
        real(self, entry, connection)

    monkeypatch.setattr(Store, "add_audit", failing)
    answer = http.post(SIGN, files={"csr": ("cco.csr", csr_pem("localhost"))})
    assert answer.status_code == 503
    made = http.post("/api/v1/deployments", json={"name": "unaudited"})
    assert made.status_code == 503
    monkeypatch.setattr(Store, "add_audit", real)

    assert _rows(settings, certificates, certificates.c.status == "issued") == []
    assert http.get("/api/v1/deployments/unaudited").status_code == 404
    results = {(e.action, e.result) for e in _rows(settings, audit_log, audit_log.c.result != "ok")}
    assert results == {
        ("certificate.sign-csr", "store-error"),
        ("deployment.create", "store-error"),
    }


def test_readers_do_not_wait_for_a_writer(
    client: tuple[TestClient, CertServer], settings: Settings
) -> None:
    """On SQLite every write transaction takes the lock at its start; a read-only one
    begins deferred and reads the last commit meanwhile (WAL)."""
    _, service = client
    store = Store.open(settings.database_url, create=False, busy_timeout=5)
    holding = threading.Event()
    release = threading.Event()

    def writer() -> None:
        with store.transaction() as connection:
            connection.execute(sa.select(sa.literal(1)))  # the write lock is taken
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(10)
        start = time.monotonic()
        record = store.get_deployment(DeploymentName("fast"))  # another connection
        # and the service's own store, as the API reads it
        assert [s.name.value for s in service.list_deployments()] == ["fast"]
        assert time.monotonic() - start < 1.0
        assert record.authority is not None
    finally:
        release.set()
        thread.join(10)
        store.close()


def test_writers_of_one_process_queue_and_time_out_as_the_busy_timeout_says(
    client: tuple[TestClient, CertServer], settings: Settings
) -> None:
    import datetime as dt

    from certserver.errors import StoreLocked

    store = Store.open(settings.database_url, create=False, busy_timeout=5)
    entry = AuditEntry(dt.datetime.now(dt.UTC), "t", "test.write", "x", "local", "ok", "")
    before = store.count_audit()
    failures: list[BaseException] = []

    def write_25() -> None:
        try:
            for _ in range(25):
                store.add_audit(entry)
        except BaseException as exc:
            failures.append(exc)

    try:
        workers = [threading.Thread(target=write_25) for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert failures == []
        assert store.count_audit() == before + 200
    finally:
        store.close()
    if settings.sqlite_path is None:
        return  # PostgreSQL: writers of other rows do not wait for each other

    quick = Store.open(settings.database_url, create=False, busy_timeout=0.3)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with quick.transaction():
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        start = time.monotonic()
        with pytest.raises(StoreLocked):
            quick.add_audit(entry)
        assert time.monotonic() - start < 3
    finally:
        release.set()
        holder.join(10)
        quick.close()


def test_a_key_unsealed_from_the_store_skips_the_rsa_check_and_others_do_not(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenSSL's RSA consistency check costs ~50 ms per RSA-2048 signature; a key the
    master key unsealed is one certserver generated (AES-GCM vouches), so it is skipped
    there, and only there."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from certserver import keys
    from certserver.identity import Component
    from certserver.keys import KeySpec, from_pkcs8_der, to_pkcs8_der

    from .conftest import create

    seen: list[bool] = []
    real = serialization.load_der_private_key

    def recording(data: bytes, password: bytes | None, **kwargs: bool) -> object:
        seen.append(kwargs.get("unsafe_skip_rsa_key_validation", False))
        return real(data, password, **kwargs)

    create(settings, "rsa", tmp_path, spec=KeySpec.RSA_2048)
    monkeypatch.setattr(keys.serialization, "load_der_private_key", recording)
    with CertServer(settings) as service:
        cert = service.sign_csr(DeploymentName("rsa"), Component.CCO, csr_pem("localhost"), "x")
    assert cert.signature_hash_algorithm is not None
    assert seen == [True]
    from_pkcs8_der(to_pkcs8_der(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    assert seen == [True, False]
