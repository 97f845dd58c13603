"""The package: a plain zip that unzip and jar extract, with a manifest, modes and fixed bytes."""

from __future__ import annotations

import hashlib
import json
import stat
import zipfile
from pathlib import Path

from certserver.config import Settings
from certserver.identity import Component, DeploymentName
from certserver.service import CertServer

from .conftest import Extracted, create, env_for, need_tool, run_process


def _manifest(zip_path: Path) -> dict[str, object]:
    with zipfile.ZipFile(zip_path) as archive:
        return json.loads(archive.read("manifest.json"))  # type: ignore[no-any-return]


def test_unzip_extracts_every_component_with_modes(alpha: Extracted, tmp_path: Path) -> None:
    unzip = need_tool("unzip")
    target = tmp_path / "unzipped"
    target.mkdir()
    done = run_process(unzip, "-q", str(alpha.result.package_path), "-d", str(target))
    assert done.returncode == 0, done.stderr
    for component in Component:
        folder = target / component.folder
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE((folder / component.key_file).stat().st_mode) == 0o600
        assert stat.S_IMODE((folder / component.cert_file).stat().st_mode) == 0o644
        assert (folder / component.ca_file).is_file()
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [c.folder for c in Component] + ["manifest.json"]
    )


def test_jar_extracts_only_the_folder_asked_for(alpha: Extracted, tmp_path: Path) -> None:
    jar = need_tool("jar")
    target = tmp_path / "jar"
    target.mkdir()
    done = run_process(jar, "xf", str(alpha.result.package_path), "ccm", cwd=target)
    assert done.returncode == 0, done.stderr
    found = sorted(str(p.relative_to(target)) for p in target.rglob("*"))
    assert found == ["ccm", "ccm/ca.crt", "ccm/mgmtserver.crt", "ccm/mgmtserver.key"]
    # and the twin: a folder that is not in the package yields nothing
    other = tmp_path / "jar-other"
    other.mkdir()
    run_process(jar, "xf", str(alpha.result.package_path), "tomcat", cwd=other)
    assert list(other.iterdir()) == []


def test_manifest_describes_every_file(alpha: Extracted) -> None:
    manifest = _manifest(alpha.result.package_path)
    view = alpha.result.deployment
    assert manifest["format_version"] == 1
    assert manifest["deployment"] == "alpha"
    assert manifest["ccid"] == view.ccid.value
    files = manifest["files"]
    assert isinstance(files, list)
    with zipfile.ZipFile(alpha.result.package_path) as archive:
        names = {info.filename for info in archive.infolist() if not info.is_dir()}
        assert {row["path"] for row in files} == names - {"manifest.json"}
        for row in files:
            assert hashlib.sha256(archive.read(row["path"])).hexdigest() == row["sha256"]
    certs = manifest["certificates"]
    assert isinstance(certs, list)
    by_component = {row["component"]: row for row in certs}
    assert set(by_component) == {c.folder for c in Component}
    anchors = manifest["trust_anchors"]
    assert isinstance(anchors, list) and len(anchors) == 1
    from cryptography import x509 as _x509

    ca = _x509.load_pem_x509_certificate(alpha.ca(Component.CCM).read_bytes())
    assert anchors[0]["serial"] == format(ca.serial_number, "x")
    assert anchors[0]["not_after"] == ca.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    for component in view.components:
        row = by_component[component.component.folder]
        assert row["serial"] == component.serial
        assert row["fingerprint_sha256"] == component.fingerprint_sha256


def test_keys_are_0600_in_the_zip_and_the_zip_is_0600(alpha: Extracted) -> None:
    path = alpha.result.package_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            mode = stat.S_IMODE(info.external_attr >> 16)
            if info.filename.endswith((".key", "_key.pem")):
                assert mode == 0o600, info.filename
            elif info.is_dir():
                assert mode == 0o700, info.filename
            else:
                assert mode == 0o644, info.filename


def test_entries_are_sorted_with_one_timestamp(alpha: Extracted) -> None:
    with zipfile.ZipFile(alpha.result.package_path) as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert len({info.date_time for info in infos}) == 1


def test_export_gives_the_same_bytes(tmp_path: Path) -> None:
    settings = Settings.from_env(env_for(tmp_path / "home"))
    first = tmp_path / "first"
    first.mkdir()
    created = create(settings, "same", first)
    again = tmp_path / "again"
    again.mkdir()
    with CertServer(settings) as service:
        exported = service.export_package(DeploymentName("same"), again, force=False)
    assert exported.read_bytes() == created.package_path.read_bytes()
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    # the twin: another deployment with the same inputs is a different package
    other = create(settings, "other", first)
    assert other.package_path.read_bytes() != created.package_path.read_bytes()
