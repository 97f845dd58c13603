"""Federation: ``certserver link``, linked anchors in packages, and the check over real
handshakes (accepted only for linked components, refused again after ``link remove``)."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import pytest
from cryptography import x509

from certserver.errors import PeerRefused, RefusalReason
from certserver.federation import TrustBundle
from certserver.identity import Ccid, Component, Identity
from certserver.mtls import ComponentCredentials
from certserver.pem import parse

from .conftest import Cli, extract
from .test_access import call

CCM, CCO, MON = Component.CCM, Component.CCO, Component.MONITOR


def _ok(run: Cli, *args: str) -> str:
    done = run(*args)
    assert done.exit_code == 0, done.output
    return done.output


def _refused(run: Cli, *args: str) -> str:
    done = run(*args)
    assert done.exit_code == 1, done.output
    assert "Traceback" not in done.output
    return done.output.strip().splitlines()[-1]


def _ccid(run: Cli, name: str) -> Ccid:
    return Ccid(json.loads(_ok(run, "deployment", "show", name, "--json"))["ccid"])


@pytest.fixture
def pair(run: Cli, tmp_path: Path) -> Path:
    """Deployments north and south, and their trust bundles, in one store."""
    out = tmp_path / "out"
    out.mkdir()
    for name in ("north", "south"):
        _ok(
            run,
            "deployment",
            "create",
            name,
            "--host",
            "all=localhost,127.0.0.1",
            "--out",
            str(out),
        )
        _ok(run, "link", "export", name, "--out", str(out))
    return out


def _package(run: Cli, out: Path, name: str, into: Path) -> Path:
    _ok(run, "deployment", "export", name, "--out", str(out), "--force")
    return extract(out / f"{name}_certs.zip", into)


def test_the_bundle_is_a_spiffe_bundle_and_its_pem_twin_says_the_same(run: Cli, pair: Path) -> None:
    document = json.loads((pair / "south_bundle.json").read_text())
    ccid = _ccid(run, "south")
    assert document["certserver"]["ccid"] == ccid.value
    (key,) = document["keys"]
    assert key["use"] == "x509-svid" and key["kty"] == "EC" and key["crv"] == "P-256"
    anchor = x509.load_der_x509_certificate(base64.b64decode(key["x5c"][0]))
    south = extract(pair / "south_certs.zip", pair / "x-south")
    assert parse((south / CCM.folder / "ca.crt").read_bytes()).certificates == [anchor]
    from_json = TrustBundle.read((pair / "south_bundle.json").read_bytes(), "json")
    from_pem = TrustBundle.read((pair / "south_bundle.pem").read_bytes(), "pem")
    assert from_json == from_pem
    assert from_json.issuer_key_ids  # pins who issues south's certificates


def test_linked_components_accept_the_other_deployment_and_only_they(
    run: Cli, pair: Path, tmp_path: Path
) -> None:
    _ok(
        run,
        "link",
        "add",
        "north",
        "--bundle",
        str(pair / "south_bundle.json"),
        "--components",
        "ccm",
    )
    _ok(
        run,
        "link",
        "add",
        "south",
        "--bundle",
        str(pair / "north_bundle.pem"),
        "--components",
        "cco",
    )
    north = _package(run, pair, "north", tmp_path / "north")
    south = _package(run, pair, "south", tmp_path / "south")
    manifest = json.loads((north / "manifest.json").read_text())
    assert manifest["package_version"] == 2
    assert [(link["deployment"], link["components"]) for link in manifest["links"]] == [
        ("south", ["ccm"])
    ]
    assert (north / CCM.folder / "links.json").exists() and not (
        north / MON.folder / "links.json"
    ).exists()

    server = ComponentCredentials.from_folder(north / CCM.folder)
    visitor = ComponentCredentials.from_folder(south / CCO.folder)
    assert call(server, visitor, server.peer_check()) == Identity(_ccid(run, "south"), CCO)
    # north's own CCO still gets in, and north's Monitor (not linked) refuses south
    own = ComponentCredentials.from_folder(north / CCO.folder)
    assert call(server, own, server.peer_check()) == Identity(_ccid(run, "north"), CCO)
    monitor = ComponentCredentials.from_folder(north / MON.folder)
    refused = call(monitor, visitor, monitor.peer_check(allowed={CCO}))
    assert isinstance(refused, PeerRefused) and refused.reason is RefusalReason.UNKNOWN_CA
    # the linked anchor alone does not do it: without links.json the CCID is refused
    unlinked = dataclasses.replace(server, linked={})
    refused = call(unlinked, visitor, unlinked.peer_check())
    assert isinstance(refused, PeerRefused) and refused.reason is RefusalReason.OTHER_DEPLOYMENT
    # and the policy still applies to linked deployments' components
    refused = call(server, visitor, server.peer_check(allowed={Component.GUA}))
    assert isinstance(refused, PeerRefused)
    assert refused.reason is RefusalReason.COMPONENT_NOT_ALLOWED


def test_after_link_remove_the_next_package_refuses_again(
    run: Cli, pair: Path, tmp_path: Path
) -> None:
    _ok(
        run,
        "link",
        "add",
        "north",
        "--bundle",
        str(pair / "south_bundle.json"),
        "--components",
        "ccm",
    )
    _ok(
        run,
        "link",
        "add",
        "south",
        "--bundle",
        str(pair / "north_bundle.json"),
        "--components",
        "cco",
    )
    south = _package(run, pair, "south", tmp_path / "south")
    visitor = ComponentCredentials.from_folder(south / CCO.folder)
    linked = _package(run, pair, "north", tmp_path / "linked")
    server = ComponentCredentials.from_folder(linked / CCM.folder)
    assert isinstance(call(server, visitor, server.peer_check()), Identity)
    assert "Removed" in _ok(run, "link", "remove", "north", "south")
    unlinked = _package(run, pair, "north", tmp_path / "unlinked")
    assert not (unlinked / CCM.folder / "links.json").exists()
    assert json.loads((unlinked / "manifest.json").read_text())["package_version"] == 3
    server = ComponentCredentials.from_folder(unlinked / CCM.folder)
    refused = call(server, visitor, server.peer_check())
    assert isinstance(refused, PeerRefused) and refused.reason is RefusalReason.UNKNOWN_CA


def test_an_installed_linked_component_keeps_its_links(
    run: Cli, pair: Path, tmp_path: Path
) -> None:
    _ok(
        run,
        "link",
        "add",
        "north",
        "--bundle",
        str(pair / "south_bundle.json"),
        "--components",
        "ccm",
    )
    _ok(run, "deployment", "export", "north", "--out", str(pair), "--force")
    prefix = tmp_path / "host"
    _ok(
        run, "install", str(pair / "north_certs.zip"), "--component", "ccm", "--prefix", str(prefix)
    )
    folder = prefix / "usr/local/osmosix/ssl/ccm"
    assert (folder / "links.json").stat().st_mode & 0o777 == 0o600
    creds = ComponentCredentials.from_folder(folder)
    assert set(creds.linked) == {_ccid(run, "south")}
    doctor = run("doctor", "--component", "ccm", "--prefix", str(prefix))
    assert doctor.exit_code == 0, doctor.output
    assert "PASS ccm links: accepts linked deployments" in doctor.output
    (folder / "links.json").write_text("garbage\n")
    doctor = run("doctor", "--component", "ccm", "--prefix", str(prefix))
    assert doctor.exit_code != 0
    assert "FAIL ccm links" in doctor.output and "links.json: is damaged" in doctor.output


def test_bad_links_are_refused(run: Cli, pair: Path, tmp_path: Path) -> None:
    bundle = str(pair / "south_bundle.json")
    line = _refused(run, "link", "add", "south", "--bundle", bundle, "--components", "ccm")
    assert "deployment south's own" in line
    line = _refused(run, "link", "add", "north", "--bundle", bundle, "--components", "esb_rabbit")
    assert "the broker (esb_rabbit) cannot be linked" in line
    line = _refused(run, "link", "add", "north", "--bundle", bundle, "--components", "ccm,nope")
    assert "unknown component 'nope'" in line
    junk = tmp_path / "junk.json"
    junk.write_text('{"keys": []}')
    line = _refused(run, "link", "add", "north", "--bundle", str(junk), "--components", "ccm")
    assert "junk.json: not a certserver trust bundle" in line
    headless = tmp_path / "headless.pem"
    headless.write_bytes(
        (pair / "south_certs.zip").read_bytes()[:0] + b"-----BEGIN CERTIFICATE-----\n"
    )
    line = _refused(run, "link", "add", "north", "--bundle", str(headless), "--components", "ccm")
    assert "headless.pem: has no '# ccid:' header" in line
    unpinned = tmp_path / "unpinned.json"
    document = json.loads((pair / "south_bundle.json").read_text())
    document["certserver"]["issuer_key_ids"] = []
    unpinned.write_text(json.dumps(document))
    line = _refused(run, "link", "add", "north", "--bundle", str(unpinned), "--components", "ccm")
    assert "names no issuer key identifiers to pin" in line
    elsewhere = tmp_path / "elsewhere.json"
    document = json.loads((pair / "south_bundle.json").read_text())
    document["certserver"]["ccid"] = str(Ccid.generate())
    elsewhere.write_text(json.dumps(document))
    line = _refused(run, "link", "add", "north", "--bundle", str(elsewhere), "--components", "ccm")
    assert "belongs to another CCID" in line
    deep = tmp_path / "deep.json"
    deep.write_text('{"a":' * 100000 + "1" + "}" * 100000)
    line = _refused(run, "link", "add", "north", "--bundle", str(deep), "--components", "ccm")
    assert "deep.json: not a certserver trust bundle" in line
    line = _refused(run, "link", "remove", "north", "south")
    assert "has no link to 'south'" in line
    line = _refused(run, "link", "export", "north", "--out", str(pair))
    assert "already exists" in line
