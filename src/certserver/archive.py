"""Open a package zip safely: the one reader of ``<name>_certs.zip`` (install and inspect).

Everything about the archive's shape is checked before any member is trusted: names (no
absolute paths, ``..``, backslashes, duplicates, or entries outside the layout of
DESIGN.md §3.3), entry types (no symlinks or devices), sizes and compression ratios.
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from certserver.errors import CertserverError, FileProblem
from certserver.identity import Ccid, Component, DeploymentName
from certserver.package import FORMAT_VERSION, MANIFEST_NAME

MAX_MEMBERS = 64
MAX_MEMBER_SIZE = 1 << 20
MAX_TOTAL_SIZE = 8 << 20
#: PEM text deflates about 1.3:1; anything far beyond that is a bomb, not a certificate.
MAX_RATIO = 20
_ALLOWED_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_LAYOUT: Mapping[str, frozenset[str]] = {c.folder: c.file_names for c in Component}
_CHUNK = 64 << 10


@dataclass(frozen=True, slots=True)
class PackageMember:
    path: str
    data: bytes = field(repr=False)
    mode: int  # permission bits recorded in the zip


@dataclass(frozen=True, slots=True)
class OpenedPackage:
    """A package whose structure is sound. ``problems`` lists manifest mismatches, if any."""

    source: str
    manifest: dict[str, Any]
    name: DeploymentName
    ccid: Ccid
    members: Mapping[str, PackageMember]
    problems: tuple[str, ...]

    def file(self, component: Component, name: str) -> PackageMember | None:
        return self.members.get(f"{component.folder}/{name}")


def _in_layout(name: str) -> bool:
    parts = name.rstrip("/").split("/")
    if name.endswith("/"):
        return len(parts) == 1 and parts[0] in _LAYOUT
    return name == MANIFEST_NAME or (
        len(parts) == 2 and parts[0] in _LAYOUT and parts[1] in _LAYOUT[parts[0]]
    )


def is_zip(data: bytes) -> bool:
    return data.startswith(b"PK\x03\x04")


def read_members(
    data: bytes, source: str, *, layout: Callable[[str], bool] = lambda _name: True
) -> dict[str, PackageMember]:
    """Every file of a zip whose entries are safe (names, types, sizes, ratios, and
    ``layout``); FileProblem naming ``source`` for the first unsafe one."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise FileProblem(source, "not a readable zip") from None
    if len(infos) > MAX_MEMBERS:
        raise FileProblem(source, f"zip has {len(infos)} entries, more than certserver reads")
    seen: set[str] = set()
    for info in infos:
        _check_entry(info, source, seen, layout)
    if sum(info.file_size for info in infos) > MAX_TOTAL_SIZE:
        raise FileProblem(source, "zip unpacks to more than certserver reads")
    members: dict[str, PackageMember] = {}
    for info in infos:
        if info.is_dir():
            continue
        content = _read_member(archive, info, source)
        members[info.filename] = PackageMember(
            info.filename, content, (info.external_attr >> 16) & 0o777
        )
    return members


def open_package(data: bytes, source: str) -> OpenedPackage:
    """Check and read a package; FileProblem (naming ``source``) for an unsafe or broken one."""
    members = read_members(data, source, layout=_in_layout)
    manifest_member = members.pop(MANIFEST_NAME, None)
    if manifest_member is None:
        raise FileProblem(source, f"zip has no {MANIFEST_NAME}: not a certserver package")
    manifest, listed = _manifest(manifest_member.data, source)
    problems = [
        f"{path}: listed in the manifest but missing"
        for path in sorted(listed)
        if path not in members
    ]
    problems += [
        f"{path}: SHA-256 does not match the manifest"
        for path in sorted(listed)
        if path in members and hashlib.sha256(members[path].data).hexdigest() != listed[path]
    ]
    problems += [
        f"{path}: not listed in the manifest" for path in sorted(members) if path not in listed
    ]
    if manifest.get("format_version") != FORMAT_VERSION:
        raise FileProblem(
            source,
            f"{MANIFEST_NAME} has format {manifest.get('format_version')!r}, "
            f"this certserver reads {FORMAT_VERSION}",
        )
    try:
        name, ccid = DeploymentName(manifest["deployment"]), Ccid(manifest["ccid"])
    except (CertserverError, KeyError, TypeError, AttributeError, ValueError):
        raise FileProblem(source, f"{MANIFEST_NAME} names no valid deployment and CCID") from None
    return OpenedPackage(source, manifest, name, ccid, members, tuple(problems))


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> bytes:
    """The member's bytes, never more than the limit whatever its header claims."""
    chunks: list[bytes] = []
    total = 0
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(_CHUNK):
                total += len(chunk)
                if total > MAX_MEMBER_SIZE:
                    raise FileProblem(
                        source, f"unsafe zip entry {info.filename!r}: unpacks past its limit"
                    )
                chunks.append(chunk)
    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, NotImplementedError, EOFError):
        raise FileProblem(source, f"zip entry {info.filename!r} cannot be read") from None
    return b"".join(chunks)


def _check_entry(
    info: zipfile.ZipInfo, source: str, seen: set[str], layout: Callable[[str], bool]
) -> None:
    name = info.filename
    shown = name.encode("unicode_escape").decode("ascii")

    def refuse(problem: str) -> FileProblem:
        return FileProblem(source, f"unsafe zip entry {shown!r}: {problem}")

    if "\\" in name:
        raise refuse("backslash in the name")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise refuse("absolute path")
    parts = name.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise refuse("'..', '.' or an empty part in the path")
    if name in seen:
        raise refuse("duplicate entry")
    seen.add(name)
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise refuse("symbolic link")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise refuse("device, FIFO or socket")
    if info.flag_bits & 0x1:
        raise refuse("encrypted")
    if info.compress_type not in _ALLOWED_COMPRESSION:
        raise refuse("unsupported compression")
    if info.file_size > MAX_MEMBER_SIZE:
        raise refuse(f"{info.file_size} bytes, more than certserver reads in one file")
    if info.file_size > 4096 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise refuse("over-compressed (a zip bomb?)")
    if not layout(name):
        raise refuse("outside the package layout")


def _manifest(data: bytes, source: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The manifest and its ``path -> sha256`` table; FileProblem for any other shape."""
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError):
        raise FileProblem(source, f"{MANIFEST_NAME} is not JSON") from None
    rows = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(rows, list) or not all(
        isinstance(row, dict)
        and isinstance(row.get("path"), str)
        and isinstance(row.get("sha256"), str)
        for row in rows
    ):
        raise FileProblem(source, f"{MANIFEST_NAME} is damaged: no list of files with hashes")
    return manifest, {row["path"]: row["sha256"] for row in rows}
