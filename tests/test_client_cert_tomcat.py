"""The client certificate reaches a real Tomcat 10 through ``client-cert install`` alone.

One private Tomcat for the module (DESIGN.md §6), restarted after each install; what it
serves is read with ``openssl s_client -showcerts`` and compared by fingerprint.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from certserver.pem import certificate_pem, parse

from .conftest import Cli, snapshot
from .tomcat_tools import OLDER_SERVER_XML, PrivateTomcat, https_get, served_chain
from .webcert_tools import TwoLevel, ca, fingerprint, leaf, scrambled_bundle, two_level

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tomcat() -> Iterator[PrivateTomcat]:
    instance = PrivateTomcat.create()
    try:
        yield instance
    finally:
        instance.remove()


@pytest.fixture(scope="module")
def pki() -> TwoLevel:
    return two_level()


def test_the_default_self_signed_certificate_is_what_tomcat_serves(
    run: Cli, tmp_path: Path, tomcat: PrivateTomcat
) -> None:
    result = run(
        "client-cert", "default", "--host", "localhost,127.0.0.1", "--out", str(tmp_path),
        "--install", "--tomcat-home", str(tomcat.base), "--owner", "tomcat",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    tomcat.restart()
    made = parse((tmp_path / "certificate.crt").read_bytes()).certificates[0]
    assert served_chain(tomcat.port) == [fingerprint(made)]
    ok, text = https_get(tomcat.port, tmp_path / "certificate.crt")
    assert ok, text


def test_a_bring_your_own_certificate_with_a_scrambled_bundle_is_served_in_order(
    run: Cli, tmp_path: Path, tomcat: PrivateTomcat, pki: TwoLevel
) -> None:
    cert, key = pki.leaf.write(tmp_path, "server")
    bundle = tmp_path / "bundle.crt"
    bundle.write_bytes(scrambled_bundle(pki))
    result = run(
        "client-cert", "install", "--cert", str(cert), "--key", str(key),
        "--ca-bundle", str(bundle), "--host", "localhost",
        "--tomcat-home", str(tomcat.base), "--owner", "tomcat",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    tomcat.restart()
    assert served_chain(tomcat.port) == [
        fingerprint(pki.leaf.cert),
        fingerprint(pki.intermediate.cert),
    ]
    root = tmp_path / "root.crt"
    root.write_bytes(certificate_pem(pki.root.cert))
    ok, text = https_get(tomcat.port, root)
    assert ok, text
    # the refusing twin: a client that trusts another root does not accept it
    other = tmp_path / "other-root.crt"
    other.write_bytes(certificate_pem(ca("another root").cert))
    refused, text = https_get(tomcat.port, other)
    assert not refused
    assert "unable to get local issuer certificate" in text


def test_a_wrong_key_never_reaches_tomcat(
    run: Cli, tmp_path: Path, tomcat: PrivateTomcat, pki: TwoLevel
) -> None:
    before = snapshot(tomcat.base / "conf")
    cert, _ = pki.leaf.write(tmp_path, "server")
    _, other_key = leaf(pki.intermediate).write(tmp_path, "other")
    bundle = tmp_path / "bundle.crt"
    bundle.write_bytes(scrambled_bundle(pki))
    result = run(
        "client-cert", "install", "--cert", str(cert), "--key", str(other_key),
        "--ca-bundle", str(bundle), "--tomcat-home", str(tomcat.base), "--owner", "tomcat",
    )  # fmt: skip
    assert result.exit_code == 1
    assert snapshot(tomcat.base / "conf") == before
    assert served_chain(tomcat.port)[0] == fingerprint(pki.leaf.cert)  # still the last good one


def test_a_pkcs12_keystore_with_xml_special_characters_in_its_password(
    run: Cli, tmp_path: Path, tomcat: PrivateTomcat, pki: TwoLevel
) -> None:
    other = two_level()
    cert, key = other.leaf.write(tmp_path, "server")
    bundle = tmp_path / "bundle.crt"
    bundle.write_bytes(scrambled_bundle(other))
    (tmp_path / "pw").write_text("a&b<c>\"d'e\n")
    result = run(
        "client-cert", "install", "--cert", str(cert), "--key", str(key),
        "--ca-bundle", str(bundle), "--tomcat-home", str(tomcat.base), "--owner", "tomcat",
        "--p12", "--p12-password-file", str(tmp_path / "pw"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    tomcat.restart()
    assert served_chain(tomcat.port) == [
        fingerprint(other.leaf.cert),
        fingerprint(other.intermediate.cert),
    ]


def test_tomcat_10_1_fails_a_connector_with_the_older_attributes(
    tmp_path: Path, tomcat: PrivateTomcat, pki: TwoLevel
) -> None:
    """Why an install moves them: left on the Connector, they are not read at all."""
    ssl = tomcat.base / "conf" / "ssl"
    certificate = (
        f'SSLCertificateFile="{ssl / "certificate.crt"}" '
        f'SSLCertificateKeyFile="{ssl / "certificate.key"}"'
    )
    tomcat.configure(OLDER_SERVER_XML.format(port=tomcat.port, certificate=certificate))
    with pytest.raises(AssertionError, match="HTTPS connector failed"):
        tomcat.restart()
    log = tomcat.console.read_text()
    assert "failed to set property [SSLCertificateFile]" in log
    assert "No SSLHostConfig element was found with the hostName [_default_]" in log
    del tmp_path, pki


def test_an_older_style_connector_is_moved_to_sslhostconfig_and_served(
    run: Cli, tmp_path: Path, tomcat: PrivateTomcat, pki: TwoLevel
) -> None:
    certificate = 'keystoreFile="conf/old.jks" keystorePass="changeit" keyAlias="tomcat"'
    tomcat.configure(OLDER_SERVER_XML.format(port=tomcat.port, certificate=certificate))
    cert, key = pki.leaf.write(tmp_path, "server")
    bundle = tmp_path / "bundle.crt"
    bundle.write_bytes(scrambled_bundle(pki))
    result = run(
        "client-cert", "install", "--cert", str(cert), "--key", str(key),
        "--ca-bundle", str(bundle), "--tomcat-home", str(tomcat.base), "--owner", "tomcat",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "moved its older TLS attributes" in result.output
    tomcat.restart()
    assert served_chain(tomcat.port) == [
        fingerprint(pki.leaf.cert),
        fingerprint(pki.intermediate.cert),
    ]
