"""Build and read ``<name>_certs.zip`` (DESIGN.md §3.3).

The same deployment material always gives the same bytes: entries are sorted, carry the
deployment's creation time, fixed modes and a fixed compression level.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import io
import json
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from certserver.clock import iso
from certserver.federation import Link, links_json
from certserver.identity import Ccid, Component, DeploymentName
from certserver.keys import pem_from_pkcs8_der
from certserver.pem import certificate_pem, certificates_pem
from certserver.profiles import CaMode

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
_DIR_MODE = 0o40700
_KEY_MODE = 0o100600
_CERT_MODE = 0o100644


class FileKind(enum.Enum):
    CERTIFICATE = "certificate"
    PRIVATE_KEY = "private-key"
    TRUST_ANCHORS = "trust-anchors"
    CHAIN = "chain"
    LINKS = "links"


@dataclass(frozen=True, slots=True)
class ComponentMaterial:
    """One component's leaf and its private key (PKCS#8 DER, only ever in memory)."""

    component: Component
    certificate: x509.Certificate
    key_pkcs8_der: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class DeploymentMaterial:
    """Everything a package is made from."""

    name: DeploymentName
    ccid: Ccid
    organization: str
    created_at: dt.datetime
    anchors: Sequence[x509.Certificate]
    intermediates: Sequence[x509.Certificate]
    components: Sequence[ComponentMaterial]
    package_version: int = 1
    ca_mode: CaMode = CaMode.CERTSERVER
    #: Linked deployments some components accept (federation).
    links: Sequence[Link] = ()

    def links_of(self, component: Component) -> list[Link]:
        return [link for link in self.links if component in link.components]

    @property
    def file_name(self) -> str:
        return package_file_name(self.name)


def package_file_name(name: DeploymentName) -> str:
    return f"{name.value}_certs.zip"


@dataclass(frozen=True, slots=True)
class Member:
    path: str
    component: Component
    kind: FileKind
    data: bytes = field(repr=False)
    certificate: x509.Certificate | None = None

    @property
    def mode(self) -> int:
        return _KEY_MODE if self.kind is FileKind.PRIVATE_KEY else _CERT_MODE


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lowercase hex (the manifest's form)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def members(material: DeploymentMaterial) -> list[Member]:
    """The files of a package, before the manifest, in path order."""
    chain_pem = certificates_pem(list(material.intermediates))
    out: list[Member] = []
    for item in material.components:
        component, folder = item.component, item.component.folder
        linked = material.links_of(component)
        anchors = list(material.anchors)
        for link in linked:
            anchors += [c for c in link.bundle.anchors if c not in anchors]
        anchors_pem = certificates_pem(anchors)
        out.append(
            Member(
                f"{folder}/{component.cert_file}",
                component,
                FileKind.CERTIFICATE,
                certificate_pem(item.certificate),
                item.certificate,
            )
        )
        out.append(
            Member(
                f"{folder}/{component.key_file}",
                component,
                FileKind.PRIVATE_KEY,
                pem_from_pkcs8_der(item.key_pkcs8_der),
            )
        )
        if linked and component.links_file:
            out.append(
                Member(
                    f"{folder}/{component.links_file}",
                    component,
                    FileKind.LINKS,
                    links_json(linked),
                )
            )
        if component.chain_file is None:
            out.append(
                Member(
                    f"{folder}/{component.ca_file}",
                    component,
                    FileKind.TRUST_ANCHORS,
                    chain_pem + anchors_pem,
                )
            )
            continue
        out.append(
            Member(f"{folder}/{component.ca_file}", component, FileKind.TRUST_ANCHORS, anchors_pem)
        )
        if chain_pem:
            out.append(
                Member(f"{folder}/{component.chain_file}", component, FileKind.CHAIN, chain_pem)
            )
    return sorted(out, key=lambda member: member.path)


def manifest(material: DeploymentMaterial, files: Iterable[Member]) -> dict[str, object]:
    file_rows: list[dict[str, str]] = []
    cert_rows: list[dict[str, str]] = []
    for member in files:
        file_rows.append(
            {
                "path": member.path,
                "component": member.component.folder,
                "kind": member.kind.value,
                "sha256": hashlib.sha256(member.data).hexdigest(),
            }
        )
        if member.certificate is not None:
            cert = member.certificate
            cert_rows.append(
                {
                    "path": member.path,
                    "component": member.component.folder,
                    "serial": serial_hex(cert),
                    "fingerprint_sha256": fingerprint(cert),
                    "not_after": iso(cert.not_valid_after_utc),
                }
            )
    return {
        "format_version": FORMAT_VERSION,
        "package_version": material.package_version,
        "deployment": material.name.value,
        "ccid": material.ccid.value,
        "ca_mode": material.ca_mode.value,
        "organization": material.organization,
        "created_at": iso(material.created_at),
        "trust_anchors": [
            {
                "subject": ca.subject.rfc4514_string(),
                "serial": serial_hex(ca),
                "fingerprint_sha256": fingerprint(ca),
                "not_after": iso(ca.not_valid_after_utc),
            }
            for ca in material.anchors
        ],
        "links": [
            {
                "deployment": link.bundle.name.value,
                "ccid": link.bundle.ccid.value,
                "components": sorted(c.folder for c in link.components),
                "anchors_sha256": [fingerprint(ca) for ca in link.bundle.anchors],
            }
            for link in sorted(material.links, key=lambda link: link.bundle.ccid.value)
        ],
        "files": file_rows,
        "certificates": cert_rows,
    }


def build(material: DeploymentMaterial) -> bytes:
    """The package's bytes; the same material always gives the same bytes."""
    files = members(material)
    manifest_bytes = (
        json.dumps(manifest(material, files), indent=2, sort_keys=True).encode() + b"\n"
    )
    stamp = material.created_at.astimezone(dt.UTC).timetuple()[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        folders = sorted({member.component.folder for member in files})
        entries: list[tuple[str, int, bytes]] = [(f"{f}/", _DIR_MODE, b"") for f in folders]
        entries += [(m.path, m.mode, m.data) for m in files]
        entries.append((MANIFEST_NAME, _CERT_MODE, manifest_bytes))
        for path, mode, data in sorted(entries, key=lambda entry: entry[0]):
            info = zipfile.ZipInfo(path, date_time=stamp)
            info.create_system = 3  # Unix, so unzip applies the modes
            info.external_attr = mode << 16
            if path.endswith("/"):
                info.external_attr |= 0x10  # MS-DOS directory flag
                archive.writestr(info, b"")
            else:
                # stored, not deflated: the same bytes on every machine, whatever its zlib
                info.compress_type = zipfile.ZIP_STORED
                archive.writestr(info, data)
    return buffer.getvalue()
