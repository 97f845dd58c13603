"""The web page in a real browser: playwright driving Debian's chromium (DESIGN.md §6)
against a real ``certserver serve`` (the installed console script, HTTPS with its
self-issued certificate, its own CERTSERVER_HOME, a free loopback port, stopped by PID)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from cryptography import x509

from certserver.accounts import Role
from certserver.archive import open_package
from certserver.config import Settings
from certserver.identity import Component
from certserver.service import CertServer

from .conftest import certserver_script, env_for, need, need_tool

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SESSION_COOKIE = "certserver_session"
MakeContext = Callable[..., "BrowserContext"]


@dataclass
class Server:
    url: str
    home: Path
    log: Path
    sysadmin: str  # tokens
    auditor: str

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def assert_no_token_in_log(self, *extra: str) -> None:
        text = self.log_text()
        for secret in (self.sysadmin, self.auditor, *extra):
            assert secret not in text, "a token reached the server's log"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tokens(home: Path) -> tuple[str, str]:
    """A sysadmin's and an auditor's token, made in the store the server will use."""
    with CertServer(Settings.from_env(env_for(home))) as service:
        _, sysadmin = service.create_token("alice", Role.SYSADMIN)
        _, auditor = service.create_token("audrey", Role.AUDITOR)
    return sysadmin, auditor


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``certserver serve`` as a subprocess; the readiness probe pins its own certificate."""
    started = time.monotonic()
    root = tmp_path_factory.mktemp("web-page")
    home = root / "home"
    env = env_for(home)
    sysadmin, auditor = _tokens(home)
    tokens_made = time.monotonic()
    port = _free_port()
    log = root / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [certserver_script(), "serve", "--bind", f"127.0.0.1:{port}"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    try:
        url = f"https://127.0.0.1:{port}"
        _wait_ready(process, url, home / "serve" / "server.crt", log)
        ready = time.monotonic()
        print(
            f"\ntokens made in {tokens_made - started:.2f} s, "
            f"certserver serve answered in {ready - tokens_made:.2f} s"
        )
        yield Server(url, home, log, sysadmin, auditor)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _wait_ready(process: subprocess.Popen[bytes], url: str, cert: Path, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"certserver serve ended:\n{log.read_text()}"
        if cert.exists():
            try:
                pinned = ssl.create_default_context(cafile=str(cert))
                if httpx.get(f"{url}/health", verify=pinned, timeout=2).status_code == 200:
                    return
            except (httpx.HTTPError, ssl.SSLError, OSError):
                pass
        time.sleep(0.1)
    pytest.fail(f"certserver serve did not answer within 30 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = need_tool("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the test extras hold it
        need(False, "playwright is not installed")
        raise
    started = time.monotonic()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        print(f"\nchromium {launched.version} started in {time.monotonic() - started:.2f} s")
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def new_context(browser: Browser) -> Iterator[MakeContext]:
    """Makes browser contexts (each with its own cookies); closes them at the end."""
    made: list[BrowserContext] = []

    def make(*, javascript: bool = True) -> BrowserContext:
        context = browser.new_context(
            ignore_https_errors=True,  # the self-issued certificate (pinned by the fixture)
            accept_downloads=True,
            java_script_enabled=javascript,
        )
        context.set_default_timeout(15_000)
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()


# -- steps -------------------------------------------------------------------------------------


def sign_in(page: Page, server: Server, token: str) -> int:
    """Fills the login form; the status of the page it lands on."""
    page.goto(f"{server.url}/ui/login")
    page.fill("#token", token)
    with page.expect_navigation() as navigation:
        page.click("button[type=submit]")
    response = navigation.value
    assert response is not None
    return response.status


def create_deployment(page: Page, server: Server, name: str) -> None:
    page.goto(f"{server.url}/ui/")
    page.fill("#name", name)
    page.fill("#organization", "Example Support")
    page.select_option("#key_type", "rsa-2048" if "rsa" in name else "ec-p256")
    page.fill("#hosts_all", "localhost, 127.0.0.1")
    page.fill("#hosts_ccm", "ccm.example.test")
    with page.expect_navigation():
        page.click("form[action='/ui/deployments'] button[type=submit]")
    assert page.url == f"{server.url}/ui/deployments/{name}", page.content()
    assert page.locator("h2").first.inner_text() == f"Deployment {name}"


def download(page: Page) -> tuple[str, bytes]:
    with page.expect_download() as info:
        page.click("#download")
    got = info.value
    path = got.path()
    assert got.failure() is None
    return got.suggested_filename, Path(path).read_bytes()


def listed_row(page: Page, name: str) -> dict[str, str]:
    """The deployments table's row for ``name``: its cells by column header."""
    headers = page.locator("table thead th").all_inner_texts()
    row = page.locator("table tbody tr").filter(has=page.get_by_role("link", name=name, exact=True))
    assert row.count() == 1
    cells = row.locator("td")
    found = dict(zip(headers, cells.all_inner_texts(), strict=True))
    found["days-class"] = cells.nth(headers.index("Days left")).get_attribute("class") or ""
    return found


def check_package(data: bytes, name: str, ccid: str) -> None:
    opened = open_package(data, f"{name}_certs.zip")
    assert opened.problems == ()
    assert str(opened.name) == name
    assert str(opened.ccid) == ccid
    folders = {path.split("/", 1)[0] for path in opened.members}
    assert folders >= {c.folder for c in Component}
    for component in Component:
        cert_member = opened.file(component, component.cert_file)
        assert cert_member is not None, component
        cert = x509.load_pem_x509_certificate(cert_member.data)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = set(sans.get_values_for_type(x509.DNSName))
        assert "localhost" in dns
        assert ("ccm.example.test" in dns) is (component is Component.CCM)


# -- tests -------------------------------------------------------------------------------------


def test_sysadmin_signs_in_creates_sees_days_left_opens_and_downloads(
    new_context: MakeContext, server: Server
) -> None:
    context = new_context()
    page = context.new_page()
    assert sign_in(page, server, server.sysadmin) == 200
    assert page.url == f"{server.url}/ui/"
    cookie = next(c for c in context.cookies() if c["name"] == SESSION_COOKIE)
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert "alice (sysadmin)" in page.locator("header").inner_text()

    create_deployment(page, server, "web-alpha")
    ccid = page.locator("tr", has=page.locator("th", has_text="CCID")).locator("td").inner_text()
    ccm = page.locator("tbody tr", has=page.locator("td", has_text="ccm")).first
    assert "ccm.example.test" in ccm.inner_text()

    page.goto(f"{server.url}/ui/")
    row = listed_row(page, "web-alpha")
    assert row["CCID"] == ccid
    assert row["State"] == "ready"
    assert int(row["Days left"]) in (729, 730)  # COMPONENT_VALIDITY_DAYS, rounded
    assert "ok" in row["days-class"].split()

    with page.expect_navigation():
        page.get_by_role("link", name="web-alpha", exact=True).click()
    file_name, data = download(page)
    assert file_name == "web-alpha_certs.zip"
    check_package(data, "web-alpha", ccid)
    fetched = context.request.get(f"{server.url}/ui/deployments/web-alpha/package")
    assert fetched.status == 200 and fetched.body() == data  # the same package, made again
    assert fetched.headers["cache-control"] == "no-store"  # it holds private keys

    # the same name again: refused on the page, with what was typed still in the form
    page.goto(f"{server.url}/ui/")
    page.fill("#name", "web-alpha")
    page.fill("#organization", "Example Support")
    page.select_option("#key_type", "ec-p384")
    page.fill("#hosts_all", "localhost")
    page.fill("#hosts_gua", "gua.example.test")
    with page.expect_navigation() as navigation:
        page.click("form[action='/ui/deployments'] button[type=submit]")
    assert navigation.value is not None and navigation.value.status == 409
    assert page.get_by_role("alert").inner_text() == "deployment web-alpha already exists"
    assert page.input_value("#name") == "web-alpha"
    assert page.input_value("#organization") == "Example Support"
    assert page.input_value("#key_type") == "ec-p384"
    assert page.input_value("#hosts_all") == "localhost"
    assert page.input_value("#hosts_gua") == "gua.example.test"
    assert page.input_value("#hosts_ccm") == ""
    server.assert_no_token_in_log()


def test_a_wrong_token_is_refused_on_the_login_page_and_sets_no_cookie(
    new_context: MakeContext, server: Server
) -> None:
    context = new_context()
    page = context.new_page()
    wrong = server.sysadmin[:-4] + ("AAAA" if not server.sysadmin.endswith("AAAA") else "BBBB")
    assert sign_in(page, server, wrong) == 401
    assert page.url == f"{server.url}/ui/login"
    assert page.get_by_role("alert").inner_text() == "That token is unknown, expired or revoked."
    assert page.locator("#token").count() == 1
    assert context.cookies() == []
    # still signed out: the list sends them back to the login page
    page.goto(f"{server.url}/ui/")
    assert page.url == f"{server.url}/ui/login"
    response = page.goto(f"{server.url}/ui/deployments/web-alpha/package")
    assert response is not None and response.url == f"{server.url}/ui/login"
    server.assert_no_token_in_log(wrong)


def test_an_auditor_lists_but_cannot_create_or_download_and_reads_the_audit_log(
    new_context: MakeContext, server: Server
) -> None:
    admin = new_context().new_page()
    sign_in(admin, server, server.sysadmin)
    create_deployment(admin, server, "web-bravo-rsa")
    download(admin)

    context = new_context()
    page = context.new_page()
    assert sign_in(page, server, server.auditor) == 200
    assert "audrey (auditor)" in page.locator("header").inner_text()
    assert listed_row(page, "web-bravo-rsa")["State"] == "ready"
    assert page.locator("form[action='/ui/deployments']").count() == 0
    assert page.locator("#name").count() == 0
    assert page.get_by_role("link", name="Sign a CSR").count() == 0

    page.goto(f"{server.url}/ui/deployments/web-bravo-rsa")
    assert page.locator("h2").first.inner_text() == "Deployment web-bravo-rsa"
    assert page.locator("#download").count() == 0
    response = page.goto(f"{server.url}/ui/deployments/web-bravo-rsa/package")
    assert response is not None and response.status == 403
    assert "zip" not in (response.headers.get("content-type") or "")
    assert page.get_by_role("alert").inner_text() == "Only a sysadmin may download packages."
    response = page.goto(f"{server.url}/ui/sign")
    assert response is not None and response.status == 403
    assert page.locator("form[action='/ui/sign']").count() == 0

    # forged posts with the auditor's own session and form token: refused (403) and audited
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    assert csrf
    forged = context.request.post(
        f"{server.url}/ui/deployments",
        form={"csrf": csrf, "name": "web-forged", "organization": "x", "key_type": "ec-p256"},
        max_redirects=0,
    )
    assert forged.status == 403, forged.text()
    signed = context.request.post(
        f"{server.url}/ui/sign",
        multipart={
            "csrf": csrf,
            "deployment": "web-bravo-rsa",
            "component": "ccm",
            "csr": {"name": "ccm.csr", "mimeType": "text/plain", "buffer": b"not a CSR"},
        },
        max_redirects=0,
    )
    assert signed.status == 403, signed.text()

    response = page.goto(f"{server.url}/ui/deployments/web-bravo-rsa%0Afake-row/package")
    assert response is not None and response.status == 403

    page.goto(f"{server.url}/ui/audit")
    entries = [
        dict(zip(["at", "actor", "action", "target", "source", "result"], cells, strict=True))
        for cells in (row.locator("td").all_inner_texts() for row in page.locator("tbody tr").all())
    ]
    mine = [e for e in entries if e["target"].split("/")[0] in ("web-bravo-rsa", "web-forged")]

    def by(actor: str, action: str, result: str) -> list[dict[str, str]]:
        return [
            e
            for e in mine
            if e["actor"].endswith(f"({actor})") and e["action"] == action and e["result"] == result
        ]

    assert len(by("alice", "deployment.create", "ok")) == 1
    assert len(by("alice", "package.download", "ok")) == 1
    assert len(by("audrey", "package.download", "forbidden")) == 1
    assert len(by("audrey", "deployment.create", "forbidden")) == 1
    assert len(by("audrey", "certificate.sign-csr", "forbidden")) == 1
    assert len(mine) == 5
    # the refusal for a name that is none is audited without the raw input
    unnamed = [e for e in entries if e["target"] == "" and e["actor"].endswith("(audrey)")]
    assert [e["action"] for e in unnamed] == ["package.download"]
    assert not any("fake-row" in "".join(e.values()) for e in entries)
    admin.goto(f"{server.url}/ui/")
    assert listed_row(admin, "web-bravo-rsa")["State"] == "ready"
    assert admin.get_by_role("link", name="web-forged").count() == 0
    assert all(e["source"] == "127.0.0.1" for e in mine)
    server.assert_no_token_in_log()


def test_without_javascript_sign_in_create_and_download_work(
    new_context: MakeContext, server: Server
) -> None:
    context = new_context(javascript=False)
    probe = "<p id=p>off</p><script>document.getElementById('p').textContent = 'on'</script>"
    context.route(
        "https://js-probe.invalid/",
        lambda route: route.fulfill(body=probe, content_type="text/html"),
    )
    page = context.new_page()
    page.goto("https://js-probe.invalid/")
    assert page.inner_text("#p") == "off"  # scripts really do not run in this context

    assert sign_in(page, server, server.sysadmin) == 200
    assert page.locator("script").count() == 0
    create_deployment(page, server, "web-charlie")
    assert page.locator("script").count() == 0
    ccid = page.locator("tr", has=page.locator("th", has_text="CCID")).locator("td").inner_text()
    file_name, data = download(page)
    assert file_name == "web-charlie_certs.zip"
    check_package(data, "web-charlie", ccid)
    for path in ("/ui/login", "/ui/", "/ui/sign", "/ui/audit"):
        page.goto(f"{server.url}{path}")
        assert page.locator("script, [onclick], [onsubmit]").count() == 0, path

    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()
    assert page.url == f"{server.url}/ui/login"
    assert [c for c in context.cookies() if c["name"] == SESSION_COOKIE] == []
    page.goto(f"{server.url}/ui/")
    assert page.url == f"{server.url}/ui/login"


def test_another_site_cannot_sign_the_user_out(new_context: MakeContext, server: Server) -> None:
    context = new_context()
    page = context.new_page()
    assert sign_in(page, server, server.sysadmin) == 200
    lure = f'<form method="post" action="{server.url}/ui/logout"><button>Win</button></form>'
    context.route(
        "https://elsewhere.invalid/",
        lambda route: route.fulfill(body=lure, content_type="text/html"),
    )
    page.goto("https://elsewhere.invalid/")
    with page.expect_navigation():
        page.get_by_role("button", name="Win").click()
    # the cross-site post carried no session (SameSite=Strict) and no form token
    assert [c["name"] for c in context.cookies()] == [SESSION_COOKIE]
    page.goto(f"{server.url}/ui/")
    assert page.url == f"{server.url}/ui/"
    assert "alice (sysadmin)" in page.locator("header").inner_text()


def test_a_sysadmin_signs_a_csr_on_the_page_and_a_bad_file_is_refused(
    new_context: MakeContext, server: Server, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    page = new_context().new_page()
    sign_in(page, server, server.sysadmin)
    create_deployment(page, server, "web-delta")
    ccid = page.locator("tr", has=page.locator("th", has_text="CCID")).locator("td").inner_text()
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chosen-by-the-host")]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    good, bad = tmp_path / "cco.csr", tmp_path / "notes.txt"
    good.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    bad.write_text("not a CSR\n")

    page.goto(f"{server.url}/ui/sign")
    page.select_option("#deployment", "web-delta")
    page.select_option("#component", "cco")
    page.set_input_files("#csr", str(bad))
    with page.expect_navigation() as navigation:
        page.click("form[action='/ui/sign'] button[type=submit]")
    assert navigation.value is not None and navigation.value.status == 422
    assert page.get_by_role("alert").inner_text().startswith("notes.txt: ")

    page.select_option("#deployment", "web-delta")
    page.select_option("#component", "cco")
    page.set_input_files("#csr", str(good))
    with page.expect_download() as info:
        page.click("form[action='/ui/sign'] button[type=submit]")
    assert info.value.suggested_filename == "cco.crt"
    cert = x509.load_pem_x509_certificate(Path(info.value.path()).read_bytes())
    subject = {a.oid: a.value for a in cert.subject}
    assert subject[NameOID.COMMON_NAME] == "cco"
    assert subject[NameOID.ORGANIZATIONAL_UNIT_NAME] == ccid
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{ccid}/cco"]
