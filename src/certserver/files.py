"""File writing with the right mode from the first byte, and atomic placement."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from certserver.errors import FileProblem, TargetExists


def create_secret_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 and write ``data``; refuses to replace an existing file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise TargetExists(path, "already exists") from None
    except OSError as exc:
        raise FileProblem(path, f"cannot create: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.unlink()
        raise FileProblem(path, f"cannot write: {exc.strerror}") from None


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700 if it does not exist."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise FileProblem(path, f"cannot create directory: {exc.strerror}") from None
    if not path.is_dir():
        raise FileProblem(path, "is not a directory")


_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV})


class StagedFile:
    """A 0600 temporary file next to its target, then placed, kept, or taken back.

    :meth:`place` refuses an existing target unless ``replace`` is set; either way no
    half-written file is ever visible at the target path. Until :meth:`finish`, :meth:`undo`
    restores what was there before (the replaced file, or nothing).
    """

    def __init__(self, target: Path, data: bytes) -> None:
        self.target = target
        token = secrets.token_hex(6)
        self.temp = target.with_name(f".{target.name}.{token}.tmp")
        self._backup = target.with_name(f".{target.name}.{token}.old")
        self._placed = False
        self._has_backup = False
        create_secret_file(self.temp, data)

    def place(self, *, replace: bool) -> None:
        try:
            if replace:
                with contextlib.suppress(FileNotFoundError):
                    os.link(self.target, self._backup)
                    self._has_backup = True
                self.temp.replace(self.target)
                self._placed = True
            else:
                self._place_new()
        except FileExistsError:
            raise TargetExists(self.target, "already exists (use --force to replace it)") from None
        except OSError as exc:
            raise FileProblem(self.target, f"cannot write: {exc.strerror}") from None

    def _place_new(self) -> None:
        try:
            os.link(self.temp, self.target)  # fails if the target exists: no clobbering
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            # a file system without hard links (vfat, some network mounts): check, then
            # rename; only a writer racing us in the same instant could be replaced
            if os.path.lexists(self.target):
                raise FileExistsError(errno.EEXIST, "exists", str(self.target)) from None
            self.temp.replace(self.target)
        self._placed = True
        self._discard()  # placed whatever happens to the temporary name

    def undo(self) -> None:
        """Put back what the target was before :meth:`place`; remove the staged file.

        Best effort: it runs while another error is on its way to the user.
        """
        with contextlib.suppress(OSError):
            if self._placed and self._has_backup:
                self._backup.replace(self.target)
            elif self._placed:
                self.target.unlink()
        self._placed = False
        self._discard()

    def finish(self) -> None:
        """Keep the placed file; drop the backup."""
        if self._has_backup:
            with contextlib.suppress(OSError):
                self._backup.unlink()
        self._discard()

    def _discard(self) -> None:
        with contextlib.suppress(OSError):
            self.temp.unlink()


def place_all(files: Mapping[Path, bytes], *, replace: bool) -> None:
    """Place several files as :class:`StagedFile` does one: all of them, or none (what was
    there before is put back when one fails)."""
    staged: list[StagedFile] = []
    try:
        for path, data in files.items():
            staged.append(StagedFile(path, data))
            staged[-1].place(replace=replace)
    except BaseException:
        for item in reversed(staged):
            item.undo()
        raise
    for item in staged:
        item.finish()


def read_regular_file(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (never a FIFO or a device)."""
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise FileProblem(path, "is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem(path, "is not a regular file")
        if info.st_size > limit:
            raise FileProblem(path, f"too large to be {what}")
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise FileProblem(path, "no such file") from None
    except OSError as exc:
        raise FileProblem(path, f"cannot read: {exc.strerror}") from None
    if len(data) > limit:
        raise FileProblem(path, f"too large to be {what}")
    return data


def check_writable_dir(path: Path) -> None:
    """Refuse early when ``path`` is not an existing directory we can create files in."""
    if not path.exists():
        raise FileProblem(path, "output directory does not exist")
    if not path.is_dir():
        raise FileProblem(path, "output path is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise FileProblem(path, "output directory is not writable")


def read_passphrase(path: Path) -> bytes:
    """The first line of a passphrase file (its newline dropped); refuses an empty one."""
    data = read_regular_file(path, 4096, "a passphrase file")
    passphrase = data.splitlines()[0] if data else b""
    if not passphrase:
        raise FileProblem(path, "passphrase file is empty")
    return passphrase
