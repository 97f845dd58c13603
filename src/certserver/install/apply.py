"""Carry out an install plan: stage next to each target, swap atomically, keep the old set.

Under an exclusive lock: finish what an interrupted install left (see :func:`recover`);
stage every folder; write a journal; swap each folder into place
(``renameat2(RENAME_EXCHANGE)``); set the Tomcat link; keep the replaced sets as
``.<name>.previous``; drop the journal. A failure at any step undoes the swaps already made;
a crash is undone by the next run, which finds the journal.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from certserver.errors import CertserverError, FileProblem, InstallFailed
from certserver.identity import Component
from certserver.install import fsops
from certserver.install.paths import HostPaths, link_points_to
from certserver.install.plan import InstallPlan, PlannedDir, PlannedLink, installed_set
from certserver.verify import Status, check_set

_LOCK = ".certserver-install.lock"
_JOURNAL = ".certserver-install.journal"


@dataclass(frozen=True, slots=True)
class Outcome:
    changed: bool
    messages: tuple[str, ...]


@dataclass
class _Swap:
    target: Path
    staging: Path  # after the swap: the old set (an empty folder when there was none)
    had_old: bool


_held: set[Path] = set()


@contextlib.contextmanager
def locked(paths: HostPaths) -> Iterator[None]:
    """One install or rollback at a time on this host (an exclusive ``flock``).

    Taking it first undoes an interrupted install. Re-entrant within one process, so a
    caller can plan under the same lock that :func:`apply` takes.
    """
    lock = paths.ssl_root / _LOCK
    if lock in _held:
        yield
        return
    paths.ssl_root.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _held.add(lock)
        recover(paths)
        yield
    finally:
        _held.discard(lock)
        os.close(fd)


def apply(plan: InstallPlan, *, before_swap: Callable[[], None] | None = None) -> Outcome:
    """Install ``plan``. ``before_swap`` runs between staging and swapping (tests inject here)."""
    with locked(plan.paths):
        for planned in plan.dirs:
            _clean_stale_staging(planned.path)
        if all(_matches(planned, plan.chown) for planned in plan.dirs) and _link_ok(plan.link):
            return Outcome(False, ("already installed: nothing changed",))
        return _apply(plan, before_swap)


def _apply(plan: InstallPlan, before_swap: Callable[[], None] | None) -> Outcome:
    messages: list[str] = []
    staged: list[tuple[PlannedDir, Path]] = []
    swaps: list[_Swap] = []
    journal = plan.paths.ssl_root / _JOURNAL
    try:
        for planned in plan.dirs:
            staged.append((planned, _stage(planned, plan.chown)))
        if before_swap is not None:
            before_swap()
        _write_journal(journal, [(planned.path, staging) for planned, staging in staged])
        for planned, staging in staged:
            swaps.append(_swap_in(planned.path, staging))
        if plan.link is not None:
            messages += _place_link(plan.link, force=plan.force)
    except BaseException as exc:
        for swap in reversed(swaps):
            _swap_back(swap)
        for _, staging in staged:
            fsops.remove_tree(staging)
        journal.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            where = exc.filename or "install"
            raise InstallFailed(f"{where}: {exc.strerror}; nothing was changed") from None
        raise
    journal.unlink(missing_ok=True)
    for swap in swaps:
        (swap.target / _NEW_MARKER).unlink(missing_ok=True)
        messages.append(f"installed {swap.target}")
        if swap.had_old:
            messages += _keep_previous(swap)
        else:
            fsops.remove_tree(swap.staging)
    return Outcome(True, tuple(messages))


def _keep_previous(swap: _Swap) -> list[str]:
    """Keep the replaced set as ``.previous`` (unless it was the same files: a repair)."""
    previous = HostPaths.previous(swap.target)
    try:
        if _same_files(swap.staging, swap.target):
            fsops.remove_tree(swap.staging)
            return []
        if previous.is_dir() and not previous.is_symlink():
            fsops.exchange(swap.staging, previous)  # previous = the set just replaced
        else:
            fsops.remove_tree(previous)
            swap.staging.rename(previous)
    except OSError as exc:
        return [f"warning: could not keep the replaced set as {previous}: {exc.strerror}"]
    fsops.remove_tree(swap.staging)  # the set before that, if any
    if swap.staging.exists():
        return [f"warning: could not remove {swap.staging}"]
    return []


def rollback(
    component: Component, paths: HostPaths, *, now: datetime, dry_run: bool = False
) -> Outcome:
    """Bring back the set before the current one (and, for esb, the broker's files)."""
    folders = [paths.folder(member) for member in component.installed_with]
    with locked(paths):
        problems = []
        for member, folder in zip(component.installed_with, folders, strict=True):
            problems += _rollback_problems(member, folder, now)
        if problems:
            raise FileProblem(folders[0], "cannot roll back: " + "; ".join(problems))
        if dry_run:
            return Outcome(False, tuple(f"would roll back {folder}" for folder in folders))
        done: list[Path] = []
        try:
            for folder in folders:
                fsops.exchange(HostPaths.previous(folder), folder)
                done.append(folder)
        except OSError as exc:
            for folder in reversed(done):
                with contextlib.suppress(OSError):
                    fsops.exchange(HostPaths.previous(folder), folder)
            raise InstallFailed(f"{exc.filename}: {exc.strerror}; nothing was changed") from None
    return Outcome(True, tuple(f"rolled back {folder}" for folder in folders))


def _rollback_problems(component: Component, folder: Path, now: datetime) -> list[str]:
    previous = HostPaths.previous(folder)
    for path, what in ((folder, "installed set"), (previous, "previous set")):
        try:
            info = path.lstat()
        except FileNotFoundError:
            return [f"no {what} at {path}"]
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            return [f"the {what} at {path} is not a real folder"]
    try:
        findings, _ = check_set(installed_set(component, previous), now)
    except CertserverError as exc:
        return [f"the previous set is incomplete: {exc.message}"]
    return [
        f"the previous set: {f.check}: {f.message}" for f in findings if f.status is Status.FAIL
    ]


def interrupted(paths: HostPaths) -> bool:
    """True when an install stopped between its swaps (the next install or rollback undoes it)."""
    return (paths.ssl_root / _JOURNAL).exists()


def recover(paths: HostPaths) -> None:
    """Undo an install that was interrupted between its swaps (its journal is still there).

    Every folder that already holds the new set gets its old one back, so the host is left
    with the old sets throughout, never a mix.
    """
    journal = paths.ssl_root / _JOURNAL
    try:
        entries = json.loads(journal.read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError):
        journal.unlink(missing_ok=True)
        return
    for entry in entries:
        target, staging = Path(entry["target"]), Path(entry["staging"])
        with contextlib.suppress(OSError):
            if (target / _NEW_MARKER).exists() and staging.is_dir():  # swapped: undo it
                fsops.exchange(staging, target)
                if not any(target.iterdir()):  # there was no old set
                    target.rmdir()
            fsops.remove_tree(staging)
    journal.unlink(missing_ok=True)


#: Written into a staged folder until the install completes, so recovery can tell sets apart.
_NEW_MARKER = ".certserver-new"


def _write_journal(journal: Path, entries: list[tuple[Path, Path]]) -> None:
    data = json.dumps([{"target": str(t), "staging": str(s)} for t, s in entries]).encode()
    journal.unlink(missing_ok=True)
    fsops.write_file(journal, data, 0o600, None)
    fsops.fsync_dir(journal.parent)


def _stage(planned: PlannedDir, chown: bool) -> Path:
    parent = planned.path.parent
    parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    staging = parent / f"{HostPaths.staging_prefix(planned.path)}{secrets.token_hex(6)}"
    owner = (planned.owner.uid, planned.owner.gid) if chown else None
    fsops.make_dir(staging, planned.mode, owner)
    for planned_file in planned.files:
        fsops.write_file(staging / planned_file.name, planned_file.data, planned_file.mode, owner)
    fsops.write_file(staging / _NEW_MARKER, b"", 0o600, None)
    fsops.fsync_dir(staging)
    return staging


def _swap_in(target: Path, staging: Path) -> _Swap:
    """Exchange ``staging`` with ``target``; a missing target is first an empty folder, so
    the swap is one atomic step either way and can be undone the same way."""
    had_old = target.exists()
    if not had_old:
        target.mkdir(mode=0o700)
    fsops.exchange(staging, target)
    fsops.fsync_dir(target.parent)
    return _Swap(target, staging, had_old)


def _swap_back(swap: _Swap) -> None:
    with contextlib.suppress(OSError):
        fsops.exchange(swap.staging, swap.target)
        if not swap.had_old:
            swap.target.rmdir()


def _clean_stale_staging(target: Path) -> None:
    """Staging folders an interrupted install left behind are never the live set."""
    prefix = HostPaths.staging_prefix(target)
    if target.parent.is_dir():
        for stale in target.parent.iterdir():
            if stale.name.startswith(prefix):
                fsops.remove_tree(stale)


def _same_files(first: Path, second: Path) -> bool:
    def contents(folder: Path) -> dict[str, bytes]:
        return {
            p.name: p.read_bytes()
            for p in folder.iterdir()
            if p.name != _NEW_MARKER and p.is_file() and not p.is_symlink()
        }

    try:
        return contents(first) == contents(second)
    except OSError:
        return False


def _matches(planned: PlannedDir, chown: bool) -> bool:
    """True when ``planned`` is installed exactly: same files, bytes, modes (and owners)."""
    try:
        info = planned.path.lstat()
        if not stat.S_ISDIR(info.st_mode) or stat.S_IMODE(info.st_mode) != planned.mode:
            return False
        if chown and (info.st_uid, info.st_gid) != (planned.owner.uid, planned.owner.gid):
            return False
        if sorted(p.name for p in planned.path.iterdir()) != sorted(f.name for f in planned.files):
            return False
        for planned_file in planned.files:
            path = planned.path / planned_file.name
            file_info = path.lstat()
            if not stat.S_ISREG(file_info.st_mode):
                return False
            if stat.S_IMODE(file_info.st_mode) != planned_file.mode:
                return False
            if chown and (file_info.st_uid, file_info.st_gid) != (
                planned.owner.uid,
                planned.owner.gid,
            ):
                return False
            if path.read_bytes() != planned_file.data:
                return False
    except OSError:
        return False
    return True


def _link_ok(link: PlannedLink | None) -> bool:
    return link is None or link_points_to(link.path, link.folder)


def _place_link(link: PlannedLink, *, force: bool) -> list[str]:
    """Point the Tomcat link at the component folder; a real folder there needs ``force``."""
    if _link_ok(link):
        return []
    messages = []
    aside: Path | None = None
    if link.path.exists() and not link.path.is_symlink():
        if not force:
            raise FileProblem(link.path, "is a real folder, not a link (--force moves it aside)")
        aside = link.path.with_name(f"{link.path.name}.moved-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
        link.path.rename(aside)
        messages.append(f"moved {link.path} aside to {aside}")
    temporary = link.path.with_name(f".{link.path.name}.{secrets.token_hex(6)}")
    try:
        link.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        temporary.symlink_to(link.target)
        temporary.replace(link.path)  # atomic: the link is never missing
        if not link_points_to(link.path, link.folder):
            raise OSError(0, "the link does not reach the component folder", str(link.path))
    except OSError:
        temporary.unlink(missing_ok=True)
        if aside is not None:
            link.path.unlink(missing_ok=True)
            aside.rename(link.path)
        raise
    messages.append(f"linked {link.path} -> {link.target}")
    return messages
