"""Helpers to build packages by hand (hostile or tampered) and to look at installed trees."""

from __future__ import annotations

import hashlib
import json
import stat
import zipfile
from pathlib import Path


def rewrite_package(
    source: Path,
    target: Path,
    replace: dict[str, bytes] | None = None,
    rehash: bool = True,
    extra: list[tuple[zipfile.ZipInfo, bytes]] | None = None,
) -> Path:
    """A copy of ``source`` with members replaced; the manifest re-hashed unless told not to."""
    replace = replace or {}
    with zipfile.ZipFile(source) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    manifest_index = next(
        i for i, (info, _) in enumerate(entries) if info.filename == "manifest.json"
    )
    entries = [(info, replace.get(info.filename, data)) for info, data in entries]
    if rehash:
        manifest = json.loads(entries[manifest_index][1])
        by_path = {info.filename: data for info, data in entries}
        for row in manifest["files"]:
            row["sha256"] = hashlib.sha256(by_path[row["path"]]).hexdigest()
        entries[manifest_index] = (entries[manifest_index][0], json.dumps(manifest).encode())
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for info, data in entries + (extra or []):
            out.writestr(info, data)
    return target


def tree(root: Path) -> dict[str, tuple[str, int, int, int, bytes]]:
    """Every path under ``root``: (kind, mode, uid, gid, content or link target)."""
    found: dict[str, tuple[str, int, int, int, bytes]] = {}
    if not root.exists():
        return found
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            kind, content = "link", str(path.readlink()).encode()
        elif path.is_dir():
            kind, content = "dir", b""
        else:
            kind, content = "file", path.read_bytes()
        found[str(path.relative_to(root))] = (
            kind,
            stat.S_IMODE(info.st_mode),
            info.st_uid,
            info.st_gid,
            content,
        )
    return found
