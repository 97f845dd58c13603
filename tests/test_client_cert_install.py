"""``certserver client-cert install``: server.xml edits, nginx files, rollback, owners, p12."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12
from lxml import etree

from certserver.pem import certificate_pem, parse

from .conftest import Cli, need, need_tool, run_process, snapshot
from .webcert_tools import TwoLevel, fingerprint, leaf, scrambled_bundle
from .webcert_tools import two_level as make_two_level

FIXTURES = Path(__file__).parent / "fixtures" / "tomcat"


@pytest.fixture(scope="module")
def pki() -> TwoLevel:
    return make_two_level()


@pytest.fixture
def inputs(tmp_path: Path, pki: TwoLevel) -> dict[str, Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    cert, key = pki.leaf.write(folder, "server")
    bundle = folder / "bundle.crt"
    bundle.write_bytes(scrambled_bundle(pki))
    return {"cert": cert, "key": key, "bundle": bundle}


def _home(tmp_path: Path, fixture: str, transform=None) -> Path:  # type: ignore[no-untyped-def]
    home = tmp_path / "tomcat"
    (home / "conf").mkdir(parents=True)
    data = (FIXTURES / fixture).read_bytes()
    (home / "conf" / "server.xml").write_bytes(transform(data) if transform else data)
    return home


def _install(run: Cli, inputs: dict[str, Path], *extra: str):  # type: ignore[no-untyped-def]
    return run(
        "client-cert", "install", "--cert", str(inputs["cert"]), "--key", str(inputs["key"]),
        "--ca-bundle", str(inputs["bundle"]), *extra,
    )  # fmt: skip


def _connector(server_xml: Path, port: str) -> etree._Element:
    root = etree.parse(str(server_xml)).getroot()
    found = root.findall(f".//Connector[@port='{port}']")
    assert len(found) == 1
    return found[0]


def _removed_lines(before: bytes, after: bytes) -> list[str]:
    import difflib

    diff = difflib.ndiff(before.decode().splitlines(), after.decode().splitlines())
    return [line[2:] for line in diff if line.startswith("- ")]


# --- Tomcat: server.xml -------------------------------------------------------------------


def test_stock_server_xml_gets_an_https_connector_and_keeps_every_byte_else(
    run: Cli, tmp_path: Path, inputs: dict[str, Path], pki: TwoLevel
) -> None:
    home = _home(tmp_path, "stock-debian-10.1.xml")
    before = (home / "conf" / "server.xml").read_bytes()
    result = _install(run, inputs, "--tomcat-home", str(home))
    assert result.exit_code == 0, result.output
    after = (home / "conf" / "server.xml").read_bytes()
    assert _removed_lines(before, after) == []  # only added lines
    assert after.count(b'<Connector port="8443"') == before.count(b'<Connector port="8443"') + 1
    connector = _connector(home / "conf" / "server.xml", "8443")
    certificate = connector.find("SSLHostConfig/Certificate")
    assert certificate is not None
    ssl = home / "conf" / "ssl"
    assert certificate.attrib == {
        "certificateFile": str(ssl / "certificate.crt"),
        "certificateKeyFile": str(ssl / "certificate.key"),
        "certificateChainFile": str(ssl / "cacertificate.crt"),
        "type": "EC",
    }
    assert (
        connector.get("sslImplementationName")
        == "org.apache.tomcat.util.net.jsse.JSSEImplementation"
    )
    # the files: leaf, key 0600, chain = the intermediate only (the root is the anchor)
    assert (ssl / "certificate.crt").read_bytes() == certificate_pem(pki.leaf.cert)
    assert stat.S_IMODE((ssl / "certificate.key").stat().st_mode) == 0o600
    assert parse((ssl / "certificate.key").read_bytes()).private_keys
    assert (ssl / "cacertificate.crt").read_bytes() == certificate_pem(pki.intermediate.cert)


def test_with_two_https_connectors_a_port_is_needed_and_only_that_one_changes(
    run: Cli, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    home = _home(tmp_path, "several-connectors.xml")
    server_xml = home / "conf" / "server.xml"
    before = snapshot(home)
    refused = _install(run, inputs, "--tomcat-home", str(home))
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines()[-1] == (
        f"certserver: error: {server_xml}: has 2 HTTPS connectors (ports 8443, 9443): "
        "choose one with --connector-port"
    )
    assert snapshot(home) == before
    original = server_xml.read_bytes()
    done = _install(run, inputs, "--tomcat-home", str(home), "--connector-port", "8443")
    assert done.exit_code == 0, done.output
    after = server_xml.read_bytes()
    # the keystore attributes of 8443's Certificate went, the PEM ones came; nothing else
    assert _removed_lines(original, after) == [
        '            <Certificate certificateKeystoreFile="conf/old.jks"',
        '                         certificateKeystorePassword="old&amp;secret"',
        '                         type="RSA" />',
    ]
    certificate = _connector(server_xml, "8443").find("SSLHostConfig/Certificate")
    assert certificate is not None and certificate.get("type") == "EC"
    assert "certificateKeystoreFile" not in certificate.attrib
    assert (
        _connector(server_xml, "9443")
        .find("SSLHostConfig/Certificate")
        .get(  # type: ignore[union-attr]
            "certificateFile"
        )
        == "/etc/other/api.crt"
    )
    text = after.decode()
    for kept in (
        "<?xml version='1.0' encoding='utf-8'?>",
        "<SSLHostConfig protocols='TLSv1.2+TLSv1.3' ciphers=\"HIGH:!aNULL\">",
        "<!-- the customer's old files -->",
        'certificateFile="commented-out.crt"',  # the commented-out connector stays a comment
        'pattern="%h %l %u %t &quot;%r&quot; %s %b" />',
    ):
        assert kept in text


@pytest.mark.parametrize(
    ("port", "message"),
    [
        ("7443", "has no connector on port 7443 (HTTPS connectors: 8443, 9443)"),
        ("8080", "the connector on port 8080 is not an HTTPS connector (SSLEnabled)"),
    ],
)
def test_a_port_that_is_not_an_https_connector_is_refused(
    run: Cli, tmp_path: Path, inputs: dict[str, Path], port: str, message: str
) -> None:
    home = _home(tmp_path, "several-connectors.xml")
    before = snapshot(home)
    result = _install(run, inputs, "--tomcat-home", str(home), "--connector-port", port)
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].endswith(message)
    assert snapshot(home) == before


def test_older_connector_attributes_move_to_sslhostconfig(
    run: Cli, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    """Tomcat 10.1 ignores the older TLS attributes on the Connector (test_client_cert_tomcat
    shows it): they move into SSLHostConfig, renamed; the keystore ones are replaced."""
    home = _home(tmp_path, "older-attributes.xml")
    server_xml = home / "conf" / "server.xml"
    original = server_xml.read_bytes()
    result = _install(run, inputs, "--tomcat-home", str(home))
    assert result.exit_code == 0, result.output
    assert (
        "moved its older TLS attributes (clientAuth, sslProtocol, keystoreFile, " in result.output
    )
    connector = _connector(server_xml, "8443")
    assert connector.attrib == {
        "port": "8443",
        "protocol": "org.apache.coyote.http11.Http11NioProtocol",
        "maxThreads": "150",
        "SSLEnabled": "true",
        "scheme": "https",
        "secure": "true",
    }
    host = connector.find("SSLHostConfig")
    assert host is not None
    assert host.attrib == {"sslProtocol": "TLS", "certificateVerification": "none"}
    certificate = host.find("Certificate")
    assert certificate is not None
    ssl = home / "conf" / "ssl"
    assert certificate.get("certificateFile") == str(ssl / "certificate.crt")
    assert certificate.get("certificateChainFile") == str(ssl / "cacertificate.crt")
    # lines before and after the connector are untouched
    old_lines, new_lines = original.decode().splitlines(), server_xml.read_text().splitlines()
    assert old_lines[:4] == new_lines[:4] and old_lines[-5:] == new_lines[-5:]
    assert '               maxThreads="150" SSLEnabled="true" scheme="https" secure="true">' in (
        new_lines
    )


def test_xml_special_characters_in_the_keystore_password(
    run: Cli, tmp_path: Path, inputs: dict[str, Path], pki: TwoLevel
) -> None:
    home = _home(tmp_path, "several-connectors.xml")
    password = "a&b<c>d\"e'f%g$h"
    (tmp_path / "pw").write_text(password + "\n")
    result = _install(
        run, inputs, "--tomcat-home", str(home), "--connector-port", "9443", "--p12",
        "--p12-password-file", str(tmp_path / "pw"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    server_xml = home / "conf" / "server.xml"
    certificate = _connector(server_xml, "9443").find("SSLHostConfig/Certificate")
    assert certificate is not None
    ssl = home / "conf" / "ssl"
    assert certificate.attrib == {
        "certificateKeystoreFile": str(ssl / "keystore.p12"),
        "certificateKeystorePassword": password,
        "certificateKeystoreType": "PKCS12",
        "certificateKeyAlias": "tomcat",
        "type": "EC",
    }
    assert 'certificateKeystorePassword="a&amp;b&lt;c&gt;d&quot;e\'f%g$h"' in server_xml.read_text()
    assert password not in result.output
    # the password came from a file: no password file is written beside the stores
    assert sorted(p.name for p in ssl.iterdir()) == ["keystore.p12", "truststore.p12"]
    loaded = pkcs12.load_pkcs12((ssl / "keystore.p12").read_bytes(), password.encode())
    assert loaded.cert is not None and fingerprint(loaded.cert.certificate) == fingerprint(
        pki.leaf.cert
    )
    assert [fingerprint(c.certificate) for c in loaded.additional_certs] == [
        fingerprint(pki.intermediate.cert)
    ]
    assert stat.S_IMODE((ssl / "keystore.p12").stat().st_mode) == 0o600


def test_crlf_line_ends_and_a_bom_are_kept(
    run: Cli, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    home = _home(
        tmp_path, "older-attributes.xml", lambda d: b"\xef\xbb\xbf" + d.replace(b"\n", b"\r\n")
    )
    result = _install(run, inputs, "--tomcat-home", str(home))
    assert result.exit_code == 0, result.output
    after = (home / "conf" / "server.xml").read_bytes()
    assert after.startswith(b"\xef\xbb\xbf<?xml")
    assert after.count(b"\n") == after.count(b"\r\n")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"<Server><Service></Server>", "is not well-formed XML (line 1)"),
        (
            b'<Server port="8005"><Engine name="x"/></Server>',
            "has no Service element to add an HTTPS connector to",
        ),
        (
            b'<?xml version="1.0"?>\n<!DOCTYPE Server [<!ENTITY connectors SYSTEM "c.xml">]>\n'
            b'<Server><Service name="C">&connectors;<Engine name="C"/></Service></Server>\n',
            "includes XML entities (other files?); edit it by hand",
        ),
        (
            b'<Server><Service name="C"><Connector port="8443" SSLEnabled="true"/>'
            b'<Connector port="8443" SSLEnabled="true"/></Service></Server>',
            "has 2 HTTPS connectors (ports 8443, 8443): choose one with --connector-port",
        ),
    ],
)
def test_a_server_xml_that_cannot_be_edited_is_refused_untouched(
    run: Cli, tmp_path: Path, inputs: dict[str, Path], content: bytes, problem: str
) -> None:
    home = tmp_path / "tomcat"
    (home / "conf").mkdir(parents=True)
    (home / "conf" / "server.xml").write_bytes(content)
    before = snapshot(home)
    result = _install(run, inputs, "--tomcat-home", str(home))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"certserver: error: {home / 'conf' / 'server.xml'}: {problem}"
    )
    assert snapshot(home) == before


def test_a_missing_server_xml_is_one_line(
    run: Cli, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    result = _install(run, inputs, "--tomcat-home", str(tmp_path / "nothing"))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"certserver: error: {tmp_path / 'nothing' / 'conf' / 'server.xml'}: no such file"
    )


# --- a failed check changes nothing -------------------------------------------------------


def test_after_a_failed_check_server_xml_and_the_ssl_folder_are_byte_identical(
    run: Cli, tmp_path: Path, inputs: dict[str, Path], pki: TwoLevel
) -> None:
    home = _home(tmp_path, "several-connectors.xml")
    first = _install(run, inputs, "--tomcat-home", str(home), "--connector-port", "8443")
    assert first.exit_code == 0, first.output
    before = snapshot(home)
    wrong_key = tmp_path / "wrong.key"
    wrong_key.write_bytes(Path(inputs["key"]).read_bytes())
    other = leaf(pki.intermediate)
    _, other_key = other.write(tmp_path, "other")
    result = run(
        "client-cert", "install", "--cert", str(inputs["cert"]), "--key", str(other_key),
        "--ca-bundle", str(inputs["bundle"]), "--tomcat-home", str(home),
        "--connector-port", "8443",
    )  # fmt: skip
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"certserver: error: {inputs['cert']}: refused: key: ")
    assert snapshot(home) == before


def test_an_incomplete_chain_is_refused_before_anything_is_written(
    run: Cli, tmp_path: Path, inputs: dict[str, Path], pki: TwoLevel
) -> None:
    home = _home(tmp_path, "stock-debian-10.1.xml")
    before = snapshot(home)
    inputs["bundle"].write_bytes(certificate_pem(pki.root.cert))
    result = _install(run, inputs, "--tomcat-home", str(home))
    assert result.exit_code == 1
    assert "refused: chain: incomplete" in result.output
    assert snapshot(home) == before
    assert not (home / "conf" / "ssl").exists()


# --- rollback ---------------------------------------------------------------------------


def test_rollback_restores_the_previous_server_xml_and_files(
    run: Cli, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    home = _home(tmp_path, "several-connectors.xml")
    original = snapshot(home)
    assert (
        _install(run, inputs, "--tomcat-home", str(home), "--connector-port", "8443").exit_code == 0
    )
    first = snapshot(home / "conf" / "server.xml", home / "conf" / "ssl")
    second = run(
        "client-cert", "default", "--host", "localhost", "--install", "--tomcat-home", str(home),
        "--connector-port", "8443",
    )  # fmt: skip
    assert second.exit_code == 0, second.output
    assert snapshot(home / "conf" / "server.xml", home / "conf" / "ssl") != first
    back = run("client-cert", "install", "--rollback", "--tomcat-home", str(home))
    assert back.exit_code == 0, back.output
    assert snapshot(home / "conf" / "server.xml", home / "conf" / "ssl") == first
    again = run("client-cert", "install", "--rollback", "--tomcat-home", str(home))
    assert again.exit_code == 1
    assert "nothing to roll back" in again.output
    del original


def test_rollback_of_the_first_install_brings_back_the_original(
    run: Cli, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    home = _home(tmp_path, "stock-debian-10.1.xml")
    original = (home / "conf" / "server.xml").read_bytes()
    assert _install(run, inputs, "--tomcat-home", str(home)).exit_code == 0
    back = run("client-cert", "install", "--rollback", "--tomcat-home", str(home))
    assert back.exit_code == 0, back.output
    assert (home / "conf" / "server.xml").read_bytes() == original
    assert list((home / "conf" / "ssl").iterdir()) == []


def test_reinstalling_the_same_files_changes_nothing_and_runs_no_restart(
    run: Cli, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    home = _home(tmp_path, "older-attributes.xml")
    assert _install(run, inputs, "--tomcat-home", str(home)).exit_code == 0
    marker = tmp_path / "restarted"
    result = _install(run, inputs, "--tomcat-home", str(home), "--restart", f"touch {marker}")
    assert result.exit_code == 0
    assert "already installed: nothing changed" in result.output
    assert not marker.exists()


# --- the ssl folder, owners and restarts ----------------------------------------------------


def test_a_linked_ssl_folder_is_refused_and_ssl_dir_chooses_another(
    run: Cli, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    home = _home(tmp_path, "older-attributes.xml")
    component = tmp_path / "osmosix-ccm"
    component.mkdir()
    (home / "conf" / "ssl").symlink_to(component)
    before = snapshot(home, component)
    refused = _install(run, inputs, "--tomcat-home", str(home))
    assert refused.exit_code == 1
    assert f"{home / 'conf' / 'ssl'}: is a link to {component}" in refused.output
    assert snapshot(home, component) == before
    elsewhere = tmp_path / "client-ssl"
    done = _install(run, inputs, "--tomcat-home", str(home), "--ssl-dir", str(elsewhere))
    assert done.exit_code == 0, done.output
    certificate = _connector(home / "conf" / "server.xml", "8443").find("SSLHostConfig/Certificate")
    assert certificate is not None
    assert certificate.get("certificateFile") == str(elsewhere / "certificate.crt")
    assert list(component.iterdir()) == []


def test_owner_gets_the_files_and_an_unknown_owner_is_refused(
    run: Cli, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    need(os.geteuid() == 0, "changing owners needs root")
    home = _home(tmp_path, "older-attributes.xml")
    before = snapshot(home)
    refused = _install(run, inputs, "--tomcat-home", str(home), "--owner", "no-such-user-x")
    assert refused.exit_code == 1
    assert (
        refused.output.strip()
        == "certserver: error: user 'no-such-user-x' does not exist on this host"
    )
    assert snapshot(home) == before
    nobody = pwd.getpwnam("nobody")
    done = _install(run, inputs, "--tomcat-home", str(home), "--owner", "nobody")
    assert done.exit_code == 0, done.output
    ssl = home / "conf" / "ssl"
    for name, mode in (
        ("certificate.key", 0o600),
        ("certificate.crt", 0o644),
        ("cacertificate.crt", 0o644),
    ):
        info = (ssl / name).stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (nobody.pw_uid, mode), name
    assert (ssl.stat().st_gid, stat.S_IMODE(ssl.stat().st_mode)) == (nobody.pw_gid, 0o750)
    server_xml = (home / "conf" / "server.xml").stat()
    assert (server_xml.st_uid, stat.S_IMODE(server_xml.st_mode)) == (0, 0o644)  # as it was


def test_restart_runs_after_an_install_and_its_failure_is_reported(
    run: Cli, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    home = _home(tmp_path, "older-attributes.xml")
    marker = tmp_path / "restarted"
    done = _install(run, inputs, "--tomcat-home", str(home), "--restart", f"touch {marker}")
    assert done.exit_code == 0, done.output
    assert marker.exists()
    home2 = _home(tmp_path / "b", "older-attributes.xml")
    failed = _install(run, inputs, "--tomcat-home", str(home2), "--restart", "false")
    assert failed.exit_code == 1
    assert (
        "restart command 'false' failed (exit code 1); the new files stay installed"
        in failed.output
    )
    assert (home2 / "conf" / "ssl" / "certificate.crt").exists()


# --- nginx ------------------------------------------------------------------------------


def test_nginx_gets_public_crt_leaf_then_chain_and_public_key(
    run: Cli, tmp_path: Path, inputs: dict[str, Path], pki: TwoLevel
) -> None:
    folder = tmp_path / "etc-ssl-certs"
    result = _install(run, inputs, "--nginx-dir", str(folder))
    assert result.exit_code == 0, result.output
    served = parse((folder / "public.crt").read_bytes()).certificates
    assert [fingerprint(c) for c in served] == [
        fingerprint(pki.leaf.cert),
        fingerprint(pki.intermediate.cert),
    ]
    key = parse((folder / "public.key").read_bytes()).private_keys[0]
    assert key.private_numbers() == pki.leaf.key.private_numbers()  # type: ignore[union-attr]
    assert stat.S_IMODE((folder / "public.key").stat().st_mode) == 0o600
    openssl = need_tool("openssl")
    root = _write(tmp_path / "root.pem", certificate_pem(pki.root.cert))
    public = str(folder / "public.crt")
    verified = run_process(
        openssl, "verify", "-CAfile", str(root), "-untrusted", public, "-purpose", "sslserver",
        public,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    back = run("client-cert", "install", "--rollback", "--nginx-dir", str(folder))
    assert back.exit_code == 0
    assert not (folder / "public.crt").exists() and not (folder / "public.key").exists()


def test_nginx_refuses_what_is_only_for_tomcat_and_a_wrong_cert(
    run: Cli, tmp_path: Path, inputs: dict[str, Path], pki: TwoLevel
) -> None:
    folder = tmp_path / "nginx"
    result = _install(run, inputs, "--nginx-dir", str(folder), "--p12")
    assert result.exit_code == 1
    assert result.output.strip() == "certserver: error: --p12: only for Tomcat (--tomcat-home)"
    no_san = leaf(pki.intermediate, san=False)
    cert, key = no_san.write(tmp_path, "nosan")
    refused = run(
        "client-cert", "install", "--cert", str(cert), "--key", str(key), "--ca-bundle",
        str(inputs["bundle"]), "--nginx-dir", str(folder),
    )  # fmt: skip
    assert refused.exit_code == 1
    assert "refused: names: no subjectAltName" in refused.output
    assert not folder.exists()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- Java keystores ---------------------------------------------------------------------


def _keytool(*args: str) -> str:
    keytool = need_tool("keytool")
    done = run_process(keytool, *args, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_keytool_lists_the_keystore_and_the_truststore(
    run: Cli, tmp_path: Path, inputs: dict[str, Path], pki: TwoLevel
) -> None:
    home = _home(tmp_path, "older-attributes.xml")
    result = _install(run, inputs, "--tomcat-home", str(home), "--p12")
    assert result.exit_code == 0, result.output
    ssl = home / "conf" / "ssl"
    password_file = ssl / "keystore.password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text().strip()
    certificate = _connector(home / "conf" / "server.xml", "8443").find("SSLHostConfig/Certificate")
    assert certificate is not None and certificate.get("certificateKeystorePassword") == password
    store = _keytool(
        "-list", "-v", "-keystore", str(ssl / "keystore.p12"), "-storetype", "PKCS12",
        "-storepass:file", str(password_file),
    )  # fmt: skip
    assert "Your keystore contains 1 entry" in store
    assert "Alias name: tomcat" in store and "Entry type: PrivateKeyEntry" in store
    assert "Certificate chain length: 2" in store
    trust = _keytool(
        "-list", "-keystore", str(ssl / "truststore.p12"), "-storetype", "PKCS12",
        "-storepass:file", str(password_file),
    )  # fmt: skip
    assert trust.count("trustedCertEntry") == 2
    for cert in (pki.intermediate.cert, pki.root.cert):
        digest = fingerprint(cert).upper()
        assert ":".join(digest[i : i + 2] for i in range(0, 64, 2)) in trust
    # and the refusing twin: without Java's trust attribute keytool sees no entries
    plain = tmp_path / "plain.p12"
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption

    plain.write_bytes(
        pkcs12.serialize_key_and_certificates(
            None, None, None, [pki.root.cert], BestAvailableEncryption(password.encode())
        )
    )
    empty = _keytool(
        "-list",
        "-keystore",
        str(plain),
        "-storetype",
        "PKCS12",
        "-storepass:file",
        str(password_file),
    )
    assert "trustedCertEntry" not in empty and "contains 0 entries" in empty
    # and a keystore whose key bag is not encrypted: Java does not see the key at all
    from cryptography.hazmat.primitives.serialization import NoEncryption

    unencrypted = tmp_path / "plain-key.p12"
    unencrypted.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"tomcat", pki.leaf.key, pki.leaf.cert, None, NoEncryption()
        )
    )
    listed = run_process(
        need_tool("keytool"), "-list", "-keystore", str(unencrypted), "-storetype", "PKCS12",
        stdin="\n", timeout=120,
    )  # fmt: skip
    assert "Your keystore contains 0 entries" in listed.stdout


def test_a_failure_while_placing_the_files_puts_every_one_back(
    run: Cli, tmp_path: Path, inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from certserver.files import StagedFile

    home = _home(tmp_path, "several-connectors.xml")
    first = run(
        "client-cert", "default", "--host", "localhost", "--install", "--tomcat-home", str(home),
        "--connector-port", "9443",
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    before = snapshot(home)
    place = StagedFile.place

    def failing(self: StagedFile, *, replace: bool) -> None:
        if self.target.name == "server.xml":  # the last one: the key and certs are placed
            raise OSError(errno.EIO, "Input/output error", str(self.target))
        place(self, replace=replace)

    monkeypatch.setattr(StagedFile, "place", failing)
    result = _install(run, inputs, "--tomcat-home", str(home), "--connector-port", "9443")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"certserver: error: {home / 'conf' / 'server.xml'}: Input/output error; "
        "nothing was changed"
    )
    assert snapshot(home) == before  # no temporary file, no new backup left behind
    monkeypatch.undo()
    back = run("client-cert", "install", "--rollback", "--tomcat-home", str(home))
    assert back.exit_code == 0  # the backup of the first install is still the one kept
    assert (home / "conf" / "server.xml").read_bytes() == (
        FIXTURES / "several-connectors.xml"
    ).read_bytes()


def test_an_install_killed_half_way_is_undone_by_the_next_run(
    run: Cli, tmp_path: Path, inputs: dict[str, Path], pki: TwoLevel
) -> None:
    from certserver.webcert import transaction
    from certserver.webcert.check import check
    from certserver.webcert.install import TomcatTarget, plan
    from certserver.webcert.material import load

    home = _home(tmp_path, "older-attributes.xml")
    assert _install(run, inputs, "--tomcat-home", str(home)).exit_code == 0
    installed = snapshot(home)
    # what a killed run leaves: the state before saved whole, then one new file placed
    other = leaf(pki.intermediate)
    cert, key = other.write(tmp_path, "other")
    material = load(cert, key, inputs["bundle"])
    report = check(material, other.cert.not_valid_before_utc)
    assert material.key is not None
    planned = plan(report, material.key, TomcatTarget(home), None)
    transaction._save(planned.changes, planned.backup)
    new_cert = next(c for c in planned.changes if c.path.name == "certificate.crt")
    assert new_cert.data is not None
    new_cert.path.write_bytes(new_cert.data)
    assert snapshot(home) != installed
    again = _install(run, inputs, "--tomcat-home", str(home))
    assert again.exit_code == 0, again.output
    assert "undid an install that was interrupted" in again.output
    assert "already installed: nothing changed" in again.output
    assert snapshot(home) == installed


def test_a_second_install_at_the_same_time_is_refused(
    run: Cli, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    import fcntl

    home = _home(tmp_path, "older-attributes.xml")
    before = snapshot(home)
    fd = os.open(home / "conf", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        busy = _install(run, inputs, "--tomcat-home", str(home))
        busy_rollback = run("client-cert", "install", "--rollback", "--tomcat-home", str(home))
    finally:
        os.close(fd)
    for result in (busy, busy_rollback):
        assert result.exit_code == 1
        assert result.output.strip().splitlines()[-1] == (
            f"certserver: error: {home / 'conf'}: another client-cert install or rollback "
            "is running here"
        )
    assert snapshot(home) == before
    assert _install(run, inputs, "--tomcat-home", str(home)).exit_code == 0


def test_a_pkcs12_with_key_and_chain_installs_without_key_or_bundle(
    run: Cli, tmp_path: Path, pki: TwoLevel
) -> None:
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption

    p12 = tmp_path / "customer.pfx"
    p12.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"x", pki.leaf.key, pki.leaf.cert, [pki.root.cert, pki.intermediate.cert],
            BestAvailableEncryption(b"pfx pass"),
        )
    )  # fmt: skip
    (tmp_path / "pass").write_text("pfx pass\n")
    folder = tmp_path / "nginx"
    args = ["client-cert", "install", "--cert", str(p12), "--nginx-dir", str(folder)]
    refused = run(*args)
    assert refused.exit_code == 1 and "needs its passphrase" in refused.output
    assert not folder.exists()
    done = run(*args, "--p12-passphrase-file", str(tmp_path / "pass"))
    assert done.exit_code == 0, done.output
    assert [fingerprint(c) for c in parse((folder / "public.crt").read_bytes()).certificates] == [
        fingerprint(pki.leaf.cert),
        fingerprint(pki.intermediate.cert),
    ]
