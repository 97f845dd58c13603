"""Carry out an install plan: stage next to each target, swap atomically, keep the old set.

Under an exclusive lock: deal with what an interrupted run left (see :func:`recover`);
stage every folder (each with a marker file); journal "swapping"; swap each folder into
place (``renameat2(RENAME_EXCHANGE)``); set the Tomcat link; journal "committed"; drop the
markers and keep the replaced sets as ``.<name>.previous``; drop the journal. A failure
before the commit undoes the swaps already made; a crash is undone (before the commit) or
finished (after it) by the next run. Rollbacks use the same journal.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from certserver.files import read_regular_file
from certserver.identity import Ccid, Component
from certserver.install import fsops
from certserver.install.paths import (
    MARKERS,
    NEW_MARKER,
    ROLLBACK_MARKER,
    HostPaths,
    link_points_to,
)
from certserver.install.plan import InstallPlan, PlannedDir, PlannedLink, installed_set
from certserver.verify import Status, check_set

_LOCK = ".certserver-install.lock"
_JOURNAL = ".certserver-install.journal"


@dataclass(frozen=True, slots=True)
class Outcome:
    changed: bool
    messages: tuple[str, ...]


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
        for stale in paths.ssl_root.glob(f"{_JOURNAL}.*"):  # a journal write cut short
            stale.unlink(missing_ok=True)
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


@dataclass(frozen=True, slots=True)
class _Entry:
    """One folder of a swap: ``staging`` holds the set to bring in (afterwards, the old one).

    ``keep`` is decided before the commit: whether the old set becomes ``.previous`` (not
    when it was the same files: a repair), so finishing twice does the same thing.
    """

    target: Path
    staging: Path
    had_old: bool
    keep: bool = False


def _apply(plan: InstallPlan, before_swap: Callable[[], None] | None) -> Outcome:
    journal = _Journal(plan.paths.ssl_root / _JOURNAL)
    entries: list[_Entry] = []
    swapped: list[_Entry] = []
    asides: list[tuple[Path, Path]] = []
    messages: list[str] = []
    try:
        for planned in plan.dirs:
            staging = _stage(planned, plan.chown)
            entries.append(_Entry(planned.path, staging, planned.path.exists()))
        if before_swap is not None:
            before_swap()
        journal.write(_INSTALL, _SWAPPING, entries)
        for entry in entries:
            if not entry.had_old:
                entry.target.mkdir(mode=0o700)  # an empty stand-in, so one exchange does it
            fsops.exchange(entry.staging, entry.target)
            fsops.fsync_dir(entry.target.parent)
            swapped.append(entry)
        if plan.link is not None:

            def moving_aside(moved: Path) -> None:  # journaled first, so a crash puts it back
                assert plan.link is not None
                asides.append((plan.link.path, moved))
                journal.write(_INSTALL, _SWAPPING, entries, aside=asides[0])

            messages += _place_link(plan.link, force=plan.force, moving_aside=moving_aside)
        entries = [
            dataclasses.replace(e, keep=e.had_old and not _same_files(e.staging, e.target))
            for e in entries
        ]
        journal.write(_INSTALL, _COMMITTED, entries)
    except BaseException as exc:
        if not _undo_install(swapped, entries):
            raise InstallFailed(
                "the install failed and could not be undone at once; the next install or "
                "--rollback restores the old sets"
            ) from None
        for aside in asides:
            with contextlib.suppress(OSError):
                _restore_aside(*aside)
        for entry in entries:
            fsops.remove_tree(entry.staging)
        journal.remove()
        if isinstance(exc, OSError):
            where = exc.filename or "install"
            raise InstallFailed(f"{where}: {exc.strerror}; nothing was changed") from None
        raise
    for entry in entries:
        messages.append(f"installed {entry.target}")
    messages += _finish_install(entries)
    journal.remove()
    return Outcome(True, tuple(messages))


def _undo_install(swapped: list[_Entry], entries: list[_Entry]) -> bool:
    """Swap the old sets back; False when one could not be (the journal then stays)."""
    for entry in reversed(swapped):
        try:
            fsops.exchange(entry.staging, entry.target)
        except OSError:
            return False
    for entry in entries:
        _remove_stand_in(entry)
    return True


def _restore_aside(link: Path, moved: Path) -> None:
    """Put back the folder an undone install had moved away from the Tomcat link."""
    if not os.path.lexists(moved):
        return
    if link.is_symlink():
        link.unlink()
    if not os.path.lexists(link):
        moved.rename(link)


def _remove_stand_in(entry: _Entry) -> None:
    """The empty folder put where there was no set, so that one exchange did the swap."""
    if not entry.had_old and entry.target.is_dir() and not entry.target.is_symlink():
        with contextlib.suppress(OSError):  # rmdir: never a folder with files in it
            entry.target.rmdir()


def _finish_install(entries: list[_Entry]) -> list[str]:
    """After the commit: drop the markers, keep each replaced set as ``.previous``.

    Every step looks before it acts, so a crash here is finished by running it again.
    """
    messages = []
    for entry in entries:
        (entry.target / NEW_MARKER).unlink(missing_ok=True)
        if entry.keep:
            messages += _keep_previous(entry)
        else:
            fsops.remove_tree(entry.staging)
    return messages


def _keep_previous(entry: _Entry) -> list[str]:
    """``.previous`` := the replaced set (in ``staging``); the one before it is discarded."""
    previous = HostPaths.previous(entry.target)
    discard = entry.target.with_name(f".{entry.target.name}.discard")
    try:
        if entry.staging.is_dir():
            if os.path.lexists(previous):
                fsops.remove_tree(discard)
                previous.rename(discard)
            entry.staging.rename(previous)
    except OSError as exc:
        return [f"warning: could not keep the replaced set as {previous}: {exc.strerror}"]
    fsops.remove_tree(discard)
    return [f"warning: could not remove {discard}"] if os.path.lexists(discard) else []


def check_rollback(component: Component, paths: HostPaths, *, now: datetime) -> None:
    """Refuse a rollback that would bring in something other than a whole, sound set."""
    problems: list[str] = []
    ccid = None
    for member in component.installed_with:
        found, ccid = _rollback_problems(member, paths.folder(member), now, ccid)
        problems += found
    if problems:
        raise FileProblem(paths.folder(component), "cannot roll back: " + "; ".join(problems))


def rollback(
    component: Component, paths: HostPaths, *, now: datetime, dry_run: bool = False
) -> Outcome:
    """Bring back the set before the current one (and, for esb, the broker's files)."""
    folders = [paths.folder(member) for member in component.installed_with]
    if dry_run and interrupted(paths):
        return Outcome(
            False,
            (
                "an interrupted install or rollback is finished or undone first; "
                "the plan can be shown after that",
            ),
        )
    if not interrupted(paths):
        check_rollback(component, paths, now=now)  # refused before anything is written
    if dry_run:
        return Outcome(False, tuple(f"would roll back {folder}" for folder in folders))
    with locked(paths):
        for folder in folders:
            _clean_stale_staging(folder)
        check_rollback(component, paths, now=now)
        journal = _Journal(paths.ssl_root / _JOURNAL)
        entries = [_Entry(folder, HostPaths.previous(folder), True) for folder in folders]
        journal.write(_ROLLBACK, _SWAPPING, entries)
        for entry in entries:
            fsops.write_file(entry.staging / ROLLBACK_MARKER, b"", 0o600, None)
        swapped: list[_Entry] = []
        try:
            for entry in entries:
                fsops.exchange(entry.staging, entry.target)
                swapped.append(entry)
            journal.write(_ROLLBACK, _COMMITTED, entries)
        except OSError as exc:
            for entry in reversed(swapped):
                try:
                    fsops.exchange(entry.staging, entry.target)
                except OSError:
                    raise InstallFailed(
                        "the rollback failed halfway; the next install or --rollback finishes "
                        "undoing it"
                    ) from None
            for entry in entries:
                (entry.staging / ROLLBACK_MARKER).unlink(missing_ok=True)
            journal.remove()
            raise InstallFailed(f"{exc.filename}: {exc.strerror}; nothing was changed") from None
        for entry in entries:
            (entry.target / ROLLBACK_MARKER).unlink(missing_ok=True)
        journal.remove()
    return Outcome(True, tuple(f"rolled back {folder}" for folder in folders))


def _rollback_problems(
    component: Component, folder: Path, now: datetime, ccid: Ccid | None
) -> tuple[list[str], Ccid | None]:
    previous = HostPaths.previous(folder)
    for path, what in ((folder, "installed set"), (previous, "previous set")):
        try:
            info = path.lstat()
        except FileNotFoundError:
            return [f"no {what} at {path}"], ccid
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            return [f"the {what} at {path} is not a real folder"], ccid
    try:
        findings, identity = check_set(installed_set(component, previous), now, expect_ccid=ccid)
    except CertserverError as exc:
        return [f"the previous set is incomplete: {exc.message}"], ccid
    failed = [f for f in findings if f.status is Status.FAIL]
    found = [f"the previous set: {f.check}: {f.message}" for f in failed]
    return found, ccid or (identity.ccid if identity else None)


def interrupted(paths: HostPaths) -> bool:
    """True when an install or rollback stopped halfway (the next one finishes or undoes it)."""
    return os.path.lexists(paths.ssl_root / _JOURNAL)


def recover(paths: HostPaths) -> None:
    """Finish what an interrupted install or rollback left, from its journal.

    Before its commit an install or rollback is undone: every folder that already holds
    the incoming set (it carries the marker) gets its old set back. After the commit it is
    finished: markers dropped, replaced sets kept as ``.previous``. Never a mix.
    """
    journal = _Journal(paths.ssl_root / _JOURNAL)
    state = journal.read()
    if state is None:
        return
    kind, phase, entries = state.kind, state.phase, state.entries
    marker = NEW_MARKER if kind == _INSTALL else ROLLBACK_MARKER
    if phase == _COMMITTED:
        if kind == _INSTALL:
            _finish_install(entries)
        for entry in entries:
            (entry.target / marker).unlink(missing_ok=True)
        journal.remove()
        return
    for entry in reversed(entries):
        if (entry.target / marker).exists() and entry.staging.is_dir():
            fsops.exchange(entry.staging, entry.target)
        if kind == _INSTALL:
            _remove_stand_in(entry)
    if state.aside is not None:
        _restore_aside(*state.aside)
    for entry in entries:
        if kind == _INSTALL:
            fsops.remove_tree(entry.staging)
        else:
            (entry.staging / marker).unlink(missing_ok=True)
    journal.remove()


_INSTALL, _ROLLBACK = "install", "rollback"
_SWAPPING, _COMMITTED = "swapping", "committed"


@dataclass(frozen=True, slots=True)
class _State:
    kind: str
    phase: str
    entries: list[_Entry]
    aside: tuple[Path, Path] | None  # (the Tomcat link's path, where its folder was moved)


class _Journal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(
        self,
        kind: str,
        phase: str,
        entries: list[_Entry],
        aside: tuple[Path, Path] | None = None,
    ) -> None:
        rows = [
            {
                "target": str(e.target),
                "staging": str(e.staging),
                "had_old": e.had_old,
                "keep": e.keep,
            }
            for e in entries
        ]
        state: dict[str, object] = {"kind": kind, "phase": phase, "entries": rows}
        if aside is not None:
            state["aside"] = [str(aside[0]), str(aside[1])]
        data = json.dumps(state).encode()
        temporary = self.path.with_name(f"{self.path.name}.{secrets.token_hex(4)}")
        fsops.write_file(temporary, data, 0o600, None)
        temporary.replace(self.path)  # the journal is always whole
        fsops.fsync_dir(self.path.parent)

    def read(self) -> _State | None:
        if not os.path.lexists(self.path):
            return None
        try:
            state = json.loads(read_regular_file(self.path, 1 << 16, "an install journal"))
            kind, phase = state["kind"], state["phase"]
            entries = [
                _Entry(
                    Path(row["target"]),
                    Path(row["staging"]),
                    bool(row["had_old"]),
                    bool(row.get("keep", False)),
                )
                for row in state["entries"]
            ]
            aside = (Path(state["aside"][0]), Path(state["aside"][1])) if "aside" in state else None
            if kind not in (_INSTALL, _ROLLBACK) or phase not in (_SWAPPING, _COMMITTED):
                raise ValueError(kind)
        except (CertserverError, ValueError, KeyError, TypeError) as exc:
            raise InstallFailed(
                f"{self.path}: damaged install journal ({type(exc).__name__}); look at the "
                "folders it names and remove it by hand"
            ) from None
        return _State(kind, phase, entries, aside)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _stage(planned: PlannedDir, chown: bool) -> Path:
    parent = planned.path.parent
    parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    staging = parent / f"{HostPaths.staging_prefix(planned.path)}{secrets.token_hex(6)}"
    owner = (planned.owner.uid, planned.owner.gid) if chown else None
    fsops.make_dir(staging, planned.mode, owner)
    for planned_file in planned.files:
        fsops.write_file(staging / planned_file.name, planned_file.data, planned_file.mode, owner)
    fsops.write_file(staging / NEW_MARKER, b"", 0o600, None)
    fsops.fsync_dir(staging)
    return staging


def _clean_stale_staging(target: Path) -> None:
    """Staging folders an interrupted install left behind are never the live set."""
    prefix = HostPaths.staging_prefix(target)
    if target.parent.is_dir():
        for stale in target.parent.iterdir():
            if stale.name.startswith(prefix):
                fsops.remove_tree(stale)


def _same_files(first: Path, second: Path) -> bool:
    """True when both folders hold exactly the same regular files (and nothing else)."""

    def contents(folder: Path) -> dict[str, bytes] | None:
        found = {}
        for entry in folder.iterdir():
            if entry.name in MARKERS:
                continue
            if entry.is_symlink() or not entry.is_file():
                return None
            found[entry.name] = entry.read_bytes()
        return found

    try:
        old, new = contents(first), contents(second)
    except OSError:
        return False
    return old is not None and old == new


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


def _place_link(
    link: PlannedLink, *, force: bool, moving_aside: Callable[[Path], None]
) -> list[str]:
    """Point the Tomcat link at the component folder; a real folder there needs ``force``."""
    if _link_ok(link):
        return []
    messages = []
    aside: Path | None = None
    if link.path.exists() and not link.path.is_symlink():
        if not force:
            raise FileProblem(link.path, "is a real folder, not a link (--force moves it aside)")
        aside = link.path.with_name(f"{link.path.name}.moved-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
        moving_aside(aside)
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
        raise
    messages.append(f"linked {link.path} -> {link.target}")
    return messages
