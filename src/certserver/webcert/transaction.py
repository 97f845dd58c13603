"""Replace a few files together, keep what was there for ``--rollback``, or change nothing.

Each new file is staged next to its target with its mode and owner set before it is placed
(a key is never readable by anyone else, not for an instant), then all are placed; any
failure puts every file back. The state before (bytes, mode, owner, or absence) is saved in a
0700 backup folder, which a rollback replays. That folder is complete on disk before the
first file is placed, under a ``.new-`` name until the last one is: a run killed in between
is undone by the next one (:func:`locked` does it), so no mix of old and new files stays.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from certserver.errors import CertserverError, FileProblem, InstallFailed
from certserver.files import StagedFile, create_secret_file, read_regular_file

_STATE = "state.json"
_MAX_BACKUP_FILE = 4 << 20


@dataclass(frozen=True)
class FileChange:
    path: Path
    data: bytes | None  # None: the file is removed
    mode: int = 0o600
    owner: tuple[int, int] | None = None  # None: whoever runs this

    def __repr__(self) -> str:  # never the bytes (a key)
        return f"FileChange({self.path}, {'remove' if self.data is None else 'write'})"


@dataclass(frozen=True)
class Outcome:
    changed: bool
    messages: tuple[str, ...]


def current(change: FileChange) -> bool:
    """True when the file is already exactly as ``change`` would leave it."""
    try:
        info = change.path.lstat()
    except FileNotFoundError:
        return change.data is None
    if change.data is None or not stat.S_ISREG(info.st_mode):
        return False
    if stat.S_IMODE(info.st_mode) != change.mode:
        return False
    if change.owner is not None and (info.st_uid, info.st_gid) != change.owner:
        return False
    return change.path.read_bytes() == change.data


def commit(
    changes: Sequence[FileChange],
    *,
    backup: Path | None,
    new_dirs: Sequence[tuple[Path, int, tuple[int, int] | None]] = (),
) -> None:
    """Make every change or none; with ``backup``, save the state before into that folder
    (replacing an older backup) once everything is in place."""
    made: list[Path] = []
    staged: list[StagedFile] = []
    removed: list[tuple[Path, Path]] = []
    saved: Path | None = None
    try:
        for path, mode, owner in new_dirs:
            if not path.exists():
                path.mkdir(mode=mode)
                made.append(path)
                if owner is not None:
                    os.chown(path, *owner)
                path.chmod(mode)
        if backup is not None:
            saved = _save(changes, backup)
        for change in changes:
            if change.data is None:
                if os.path.lexists(change.path):
                    aside = change.path.with_name(
                        f".{change.path.name}.{secrets.token_hex(6)}.removed"
                    )
                    change.path.rename(aside)
                    removed.append((change.path, aside))
                continue
            item = StagedFile(change.path, change.data)
            staged.append(item)
            if change.owner is not None:
                os.chown(item.temp, *change.owner)
            item.temp.chmod(change.mode)
            item.place(replace=True)
    except BaseException as exc:
        for item in reversed(staged):
            item.undo()
        for path, aside in reversed(removed):
            with contextlib.suppress(OSError):
                aside.rename(path)
        if saved is not None:
            shutil.rmtree(saved, ignore_errors=True)
        for path in reversed(made):
            with contextlib.suppress(OSError):
                path.rmdir()
        if isinstance(exc, OSError):
            where = exc.filename or "install"
            raise InstallFailed(f"{where}: {exc.strerror}; nothing was changed") from None
        if isinstance(exc, CertserverError):
            raise InstallFailed(f"{exc.message}; nothing was changed") from None
        raise
    for item in staged:
        item.finish()
    for _, aside in removed:
        with contextlib.suppress(OSError):
            aside.unlink()
    if saved is not None and backup is not None:
        _swap_in(saved, backup)


def _save(changes: Sequence[FileChange], backup: Path) -> Path:
    folder = backup.with_name(f"{backup.name}.new-{secrets.token_hex(6)}")
    folder.mkdir(mode=0o700)
    rows = []
    for number, change in enumerate(changes):
        try:
            info = change.path.lstat()
        except FileNotFoundError:
            rows.append({"path": str(change.path), "present": False})
            continue
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem(change.path, "is not a regular file; not replacing it")
        create_secret_file(folder / str(number), change.path.read_bytes())
        rows.append(
            {
                "path": str(change.path),
                "present": True,
                "copy": str(number),
                "mode": stat.S_IMODE(info.st_mode),
                "uid": info.st_uid,
                "gid": info.st_gid,
            }
        )
    create_secret_file(folder / _STATE, json.dumps({"files": rows}, indent=1).encode())
    return folder


def _swap_in(saved: Path, backup: Path) -> None:
    old = backup.with_name(f"{backup.name}.old-{secrets.token_hex(6)}")
    with contextlib.suppress(FileNotFoundError):
        backup.rename(old)
    saved.rename(backup)
    shutil.rmtree(old, ignore_errors=True)


def saved_changes(backup: Path) -> list[FileChange]:
    """The changes that bring back what ``backup`` recorded."""
    state_file = backup / _STATE
    if not state_file.exists():
        raise FileProblem(backup, "nothing to roll back (no earlier install was recorded here)")
    try:
        rows = json.loads(read_regular_file(state_file, 1 << 20, "a backup state"))["files"]
        changes = []
        for row in rows:
            path = Path(row["path"])
            if not row["present"]:
                changes.append(FileChange(path, None))
                continue
            data = read_regular_file(backup / row["copy"], _MAX_BACKUP_FILE, "a backup")
            changes.append(FileChange(path, data, int(row["mode"]), (row["uid"], row["gid"])))
    except (KeyError, TypeError, ValueError):
        raise FileProblem(state_file, "is damaged; restore the files by hand") from None
    return changes


def drop_backup(backup: Path) -> None:
    shutil.rmtree(backup, ignore_errors=True)


@contextlib.contextmanager
def locked(folder: Path, backup: Path) -> Iterator[tuple[str, ...]]:
    """One install or rollback at a time on ``folder`` (an ``flock`` on the folder itself,
    so no lock file is left); first undoes an install that was killed half way. Yields
    what the recovery did."""
    while not folder.exists():  # nginx's folder may not exist yet: lock where it will be
        folder = folder.parent
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InstallFailed(
                f"{folder}: another client-cert install or rollback is running here"
            ) from None
        yield _recover(backup)
    finally:
        os.close(fd)


def _recover(backup: Path) -> tuple[str, ...]:
    messages = []
    for stale in sorted(backup.parent.glob(f"{backup.name}.old-*")):
        shutil.rmtree(stale, ignore_errors=True)  # a swap-in cut short after the rename
    for interrupted in sorted(backup.parent.glob(f"{backup.name}.new-*")):
        if (interrupted / _STATE).exists():  # saved whole: files may have been placed
            commit(saved_changes(interrupted), backup=None)
            messages.append(f"undid an install that was interrupted (saved in {interrupted})")
        shutil.rmtree(interrupted, ignore_errors=True)
    return tuple(messages)
