"""The HTTP API through httpx against the real app, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from fastapi.testclient import TestClient

from certserver.accounts import Role
from certserver.archive import open_package
from certserver.config import Settings
from certserver.identity import Component
from certserver.service import CertServer
from certserver.web import create_app

from .conftest import run_openssl
from .enterprise_tools import CA_EXTENSIONS, OpensslCA

PROBLEM = "application/problem+json"


class Api:
    """The app and a token of each role."""

    def __init__(self, settings: Settings) -> None:
        #: how far the service's clock runs ahead of the real one (to expire tokens)
        self.ahead = dt.timedelta(0)
        self.service = CertServer(settings, clock=lambda: dt.datetime.now(dt.UTC) + self.ahead)
        self.app = create_app(settings, service=self.service)
        self.client = TestClient(self.app, base_url="https://testserver")
        _, self.admin = self.service.create_token("admin", Role.SYSADMIN)
        _, self.auditor = self.service.create_token("auditor", Role.AUDITOR)

    def as_(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def create(self, name: str, **body: object) -> object:
        payload = {"name": name, "hosts": {"all": ["localhost", "127.0.0.1"]}, **body}
        return self.client.post("/api/v1/deployments", json=payload, headers=self.as_(self.admin))


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    made = Api(settings)
    with made.client:
        yield made
    made.service.close()


def test_health_is_public(api: Api) -> None:
    answer = api.client.get("/health")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic YTpi"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer cst_nope"},
    ],
)
def test_no_usable_token_is_401(api: Api, headers: dict[str, str]) -> None:
    answer = api.client.get("/api/v1/deployments", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["content-type"] == PROBLEM
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json()["code"] == "unauthenticated"


def test_a_sysadmin_creates_lists_shows_and_downloads(api: Api) -> None:
    created = api.create("web-one")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["deployment"]["name"] == "web-one"
    assert created.headers["location"] == "/api/v1/deployments/web-one"
    listed = api.client.get("/api/v1/deployments", headers=api.as_(api.auditor)).json()
    assert [item["name"] for item in listed["items"]] == ["web-one"] and listed["total"] == 1
    shown = api.client.get("/api/v1/deployments/web-one", headers=api.as_(api.auditor)).json()
    assert shown["ccid"] == body["deployment"]["ccid"]
    download = api.client.get(body["download"], headers=api.as_(api.admin))
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/zip"
    assert 'filename="web-one_certs.zip"' in download.headers["content-disposition"]
    package = open_package(download.content, "download")
    assert package.ccid.value == body["deployment"]["ccid"] and package.problems == ()
    anchors = api.client.get("/api/v1/deployments/web-one/ca.crt")  # public
    assert anchors.status_code == 200 and b"BEGIN CERTIFICATE" in anchors.content


def test_an_auditor_reads_but_cannot_create_or_download(api: Api) -> None:
    assert api.create("kept").status_code == 201
    reader = api.as_(api.auditor)
    refused = api.client.post("/api/v1/deployments", json={"name": "nope"}, headers=reader)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    refused = api.client.get("/api/v1/deployments/kept/package", headers=reader)
    assert refused.status_code == 403
    assert api.client.get("/api/v1/deployments/kept", headers=reader).status_code == 200
    entries = api.client.get("/api/v1/audit", headers=reader).json()["items"]
    assert [(e["action"], e["target"], e["result"]) for e in entries[:3]] == [
        ("package.download", "kept", "forbidden"),
        ("deployment.create", "", "forbidden"),
        ("deployment.create", "kept", "ok"),
    ]
    assert entries[0]["actor"].startswith("token:") and "(auditor)" in entries[0]["actor"]
    assert entries[0]["source"] == "testclient"


def test_expired_and_revoked_tokens_are_refused(api: Api) -> None:
    credential, short = api.service.create_token("short", Role.SYSADMIN, dt.timedelta(minutes=5))
    assert api.client.get("/api/v1/deployments", headers=api.as_(short)).status_code == 200
    api.ahead = dt.timedelta(minutes=6)
    assert api.client.get("/api/v1/deployments", headers=api.as_(short)).status_code == 401
    assert api.client.get("/api/v1/deployments", headers=api.as_(api.admin)).status_code == 200
    admin_id = next(c.credential_id for c in api.service.credentials() if c.name == "admin")
    api.service.revoke_credential(admin_id)
    assert api.client.get("/api/v1/deployments", headers=api.as_(api.admin)).status_code == 401
    assert credential.expires_at is not None


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "Bad Name"}, 422, "invalid-input"),
        ({"name": "ok", "hosts": {"nobody": ["localhost"]}}, 422, "invalid-input"),
        ({"name": "ok", "hosts": {"all": ["bad host!"]}}, 422, "invalid-input"),
        ({"name": "ok", "validity_days": 0}, 422, "invalid-request"),
        ({"name": "ok", "key_type": "dsa"}, 422, "invalid-request"),
        ({}, 422, "invalid-request"),
    ],
)
def test_a_clients_mistake_is_a_4xx_problem(
    api: Api, body: dict[str, object], status: int, code: str
) -> None:
    answer = api.client.post("/api/v1/deployments", json=body, headers=api.as_(api.admin))
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["code"] == code


def test_conflicts_and_unknowns(api: Api) -> None:
    assert api.create("twice").status_code == 201
    again = api.create("twice")
    assert again.status_code == 409 and again.json()["code"] == "deployment-exists"
    missing = api.client.get("/api/v1/deployments/nobody", headers=api.as_(api.admin))
    assert missing.status_code == 404 and missing.json()["code"] == "deployment-not-found"
    nowhere = api.client.get("/api/v1/nothing-here", headers=api.as_(api.admin))
    assert nowhere.status_code == 404 and nowhere.headers["content-type"] == PROBLEM


def test_paging_and_filters(api: Api) -> None:
    for name in ("a-one", "a-two", "b-one"):
        assert api.create(name).status_code == 201
    assert api.create("c-wait", ca_mode="enterprise-leaf").status_code == 201
    reader = api.as_(api.auditor)
    page = api.client.get("/api/v1/deployments?limit=2&offset=1", headers=reader).json()
    assert [i["name"] for i in page["items"]] == ["a-two", "b-one"] and page["total"] == 4
    prefixed = api.client.get("/api/v1/deployments?name_prefix=a-", headers=reader).json()
    assert prefixed["total"] == 2
    pending = api.client.get("/api/v1/deployments?state=pending", headers=reader).json()
    assert [i["name"] for i in pending["items"]] == ["c-wait"]


def test_csr_signing_through_the_api(api: Api, tmp_path: Path) -> None:
    assert api.create("signing").status_code == 201
    key, csr = tmp_path / "host.key", tmp_path / "host.csr"
    run_openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", "/CN=whatever",
        "-addext", "subjectAltName=DNS:localhost",
    )  # fmt: skip
    files = {"csr": ("host.csr", csr.read_bytes(), "application/pkcs10")}
    signed = api.client.post(
        "/api/v1/deployments/signing/sign?component=cco", files=files, headers=api.as_(api.admin)
    )
    assert signed.status_code == 200, signed.text
    cert = x509.load_pem_x509_certificate(signed.content)
    uri = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert uri.get_values_for_type(x509.UniformResourceIdentifier)[0].endswith("/cco")
    outside = tmp_path / "outside.csr"
    run_openssl(
        "req", "-new", "-key", str(key), "-out", str(outside), "-subj", "/CN=x",
        "-addext", "subjectAltName=DNS:evil.example.com",
    )  # fmt: skip
    files = {"csr": ("outside.csr", outside.read_bytes(), "application/pkcs10")}
    refused = api.client.post(
        "/api/v1/deployments/signing/sign?component=cco", files=files, headers=api.as_(api.admin)
    )
    assert refused.status_code == 422 and refused.json()["code"] == "policy-refused"
    assert any("evil.example.com" in p for p in refused.json()["problems"])


def test_the_enterprise_intermediate_flow_through_the_api(api: Api, tmp_path: Path) -> None:
    assert api.create("corp", ca_mode="enterprise-intermediate").status_code == 201
    admin = api.as_(api.admin)
    request = api.client.get("/api/v1/deployments/corp/requests", headers=admin)
    assert request.status_code == 200 and request.headers["content-type"] == "application/pkcs10"
    csr = tmp_path / "corp_ca.csr"
    csr.write_bytes(request.content)
    root = OpensslCA.root(tmp_path / "root")
    signed = root.sign(csr, tmp_path / "corp_ca.crt", *CA_EXTENSIONS, days=1000)
    files = [
        ("cert", ("corp_ca.crt", signed.read_bytes(), "application/x-pem-file")),
        ("chain", ("root.crt", root.cert.read_bytes(), "application/x-pem-file")),
    ]
    imported = api.client.post("/api/v1/deployments/corp/import-ca", files=files, headers=admin)
    assert imported.status_code == 200, imported.text
    assert imported.json()["deployment"]["state"] == "ready"
    download = api.client.get("/api/v1/deployments/corp/package", headers=admin)
    package = open_package(download.content, "download")
    assert package.file(Component.CCM, "chain.crt") is not None
    again = api.client.post("/api/v1/deployments/corp/import-ca", files=files, headers=admin)
    assert again.status_code == 422 and "nothing pending" in again.json()["detail"]


def test_metrics(api: Api) -> None:
    assert api.create("measured").status_code == 201
    assert api.client.get("/metrics").status_code == 401
    text = api.client.get("/metrics", headers=api.as_(api.auditor)).text
    assert 'certserver_certificates{state="active"} 6' in text
    assert 'certserver_seconds_to_expiry{deployment="measured"}' in text
    assert (
        'certserver_http_requests_total{route="/api/v1/deployments",method="POST",status="201"} 1'
        in text
    )


def test_the_openapi_document(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    assert "/api/v1/deployments" in document["paths"]
    assert "/api/v1/deployments/{name}/package" in document["paths"]
    assert not any(path.startswith("/ui") for path in document["paths"])


def test_a_huge_body_is_refused_before_anyone_reads_it(api: Api) -> None:
    huge = b'{"name": "x", "pad": "' + b"A" * (5 << 20) + b'"}'
    before = len(api.service.audit_entries())
    answer = api.client.post(
        "/api/v1/deployments", content=huge, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413 and answer.json()["code"] == "too-large"
    assert len(api.service.audit_entries()) == before  # nobody was even asked who they are

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams
        for _ in range(6):
            yield b"A" * (1 << 20)

    streamed = api.client.post(
        "/api/v1/deployments", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413 and streamed.json()["code"] == "too-large"


def test_the_page_cookie_is_not_an_api_credential(api: Api) -> None:
    api.client.cookies.set("certserver_session", api.admin)
    answer = api.client.post("/api/v1/deployments", json={"name": "via-cookie"})
    assert answer.status_code == 401
    api.client.cookies.clear()


def test_security_headers_no_docs_and_the_root(api: Api) -> None:
    answer = api.client.get("/health")
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["strict-transport-security"].startswith("max-age=")
    assert api.client.get("/docs").status_code == 404
    assert api.client.get("/redoc").status_code == 404
    root = api.client.get("/", follow_redirects=False)
    assert root.status_code == 303 and root.headers["location"] == "/ui/"
    slash = api.client.get(
        "/api/v1/deployments/", headers=api.as_(api.admin), follow_redirects=False
    )
    assert slash.status_code == 404  # no redirect that echoes the Host header


def test_every_refused_change_is_audited_once(api: Api) -> None:
    admin = api.as_(api.admin)
    calls = [
        lambda: api.client.post("/api/v1/deployments", json={"name": "Bad_Name"}, headers=admin),
        lambda: api.client.post("/api/v1/deployments", json={"name": 5}, headers=admin),
        lambda: api.client.get("/api/v1/deployments/no-such/package", headers=admin),
        lambda: api.client.get("/api/v1/deployments/a%0Aforged/package", headers=admin),
        lambda: api.client.post(
            "/api/v1/deployments/x/sign?component=zzz",
            files={"csr": ("x.csr", b"junk", "application/pkcs10")},
            headers=admin,
        ),
    ]
    before = len(api.service.audit_entries())
    for number, call_ in enumerate(calls, start=1):
        answer = call_()
        assert 400 <= answer.status_code < 500, answer.text
        assert len(api.service.audit_entries()) == before + number, answer.text
    entries = api.service.audit_entries()[: len(calls)]
    assert {e.result for e in entries} <= {
        "invalid-input",
        "invalid-request",
        "deployment-not-found",
    }
    assert all("\n" not in e.target for e in entries)


def test_too_many_hosts_are_refused(api: Api) -> None:
    many = [f"h{i}.example.com" for i in range(101)]
    answer = api.create("crowded", hosts={"all": many})
    assert answer.status_code == 422 and "too many hosts" in answer.json()["detail"]


def test_a_credential_is_revoked_once(api: Api) -> None:
    from certserver.errors import InvalidInput

    credential, _ = api.service.create_token("once", Role.AUDITOR)
    api.service.revoke_credential(credential.credential_id)
    with pytest.raises(InvalidInput, match="already revoked"):
        api.service.revoke_credential(credential.credential_id)


def test_signing_in_from_another_site_is_refused(api: Api) -> None:
    other = api.client.post(
        "/ui/login",
        data={"token": api.admin},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert other.status_code == 403 and "certserver_session" not in other.headers.get(
        "set-cookie", ""
    )
    own = api.client.post(
        "/ui/login",
        data={"token": api.admin},
        headers={"Origin": "https://testserver"},
        follow_redirects=False,
    )
    assert own.status_code == 303 and "certserver_session" in own.headers["set-cookie"]
