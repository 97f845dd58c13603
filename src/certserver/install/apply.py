"""Carry out an install plan: stage next to each target, swap atomically, keep the old set.

Order: stage every folder; swap each into place (``renameat2(RENAME_EXCHANGE)``); set the
Tomcat link; only then keep the replaced sets as ``.<name>.previous``. A failure at any step
undoes the swaps already made, removes the staging folders, and leaves the old set.
"""

from __future__ import annotations

import contextlib
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from certserver.errors import CertserverError, FileProblem
from certserver.identity import Component
from certserver.install import fsops
from certserver.install.paths import HostPaths
from certserver.install.plan import InstallPlan, PlannedDir, PlannedLink


class InstallFailed(CertserverError):
    code = "install-failed"


@dataclass(frozen=True, slots=True)
class Outcome:
    changed: bool
    messages: tuple[str, ...]


@dataclass
class _Swap:
    target: Path
    staging: Path
    exchanged: bool  # True: staging now holds the old set; False: there was none


def apply(plan: InstallPlan, *, before_swap: Callable[[], None] | None = None) -> Outcome:
    """Install ``plan``. ``before_swap`` runs between staging and swapping (tests inject here)."""
    if all(_matches(planned, plan.chown) for planned in plan.dirs) and _link_ok(plan.link):
        return Outcome(False, ("already installed: nothing changed",))
    messages: list[str] = []
    staged: list[tuple[PlannedDir, Path]] = []
    swaps: list[_Swap] = []
    try:
        for planned in plan.dirs:
            _clean_stale_staging(planned.path)
            staged.append((planned, _stage(planned, plan.chown)))
        if before_swap is not None:
            before_swap()
        for planned, staging in staged:
            swaps.append(_swap_in(planned.path, staging))
        if plan.link is not None:
            messages += _place_link(plan.link, force=plan.force)
    except BaseException as exc:
        for swap in reversed(swaps):
            _swap_back(swap)
        for _, staging in staged:
            fsops.remove_tree(staging)
        if isinstance(exc, OSError):
            where = exc.filename or "install"
            raise InstallFailed(f"{where}: {exc.strerror}; nothing was changed") from None
        raise
    for swap in swaps:
        if swap.exchanged:
            previous = HostPaths.previous(swap.target)
            fsops.remove_tree(previous)
            swap.staging.rename(previous)
        messages.append(f"installed {swap.target}")
    return Outcome(True, tuple(messages))


def rollback(component: Component, paths: HostPaths) -> Outcome:
    """Bring back the set before the current one (and, for esb, the broker's files)."""
    folders = [paths.folder(component)]
    if component is Component.ESB:
        folders.append(paths.folder(Component.ESB_BROKER))
    missing = [f for f in folders if not HostPaths.previous(f).is_dir() or not f.is_dir()]
    if missing:
        raise FileProblem(missing[0], "no previous set to roll back to")
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


def _stage(planned: PlannedDir, chown: bool) -> Path:
    parent = planned.path.parent
    parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    staging = parent / f"{HostPaths.staging_prefix(planned.path)}{secrets.token_hex(6)}"
    owner = (planned.owner.uid, planned.owner.gid) if chown else None
    fsops.make_dir(staging, planned.mode, owner)
    for planned_file in planned.files:
        fsops.write_file(staging / planned_file.name, planned_file.data, planned_file.mode, owner)
    fsops.fsync_dir(staging)
    return staging


def _swap_in(target: Path, staging: Path) -> _Swap:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise FileProblem(target, "is not a directory; move it away first")
    if target.exists():
        fsops.exchange(staging, target)
        fsops.fsync_dir(target.parent)
        return _Swap(target, staging, exchanged=True)
    staging.rename(target)
    fsops.fsync_dir(target.parent)
    return _Swap(target, staging, exchanged=False)


def _swap_back(swap: _Swap) -> None:
    with contextlib.suppress(OSError):
        if swap.exchanged:
            fsops.exchange(swap.staging, swap.target)
        else:
            swap.target.rename(swap.staging)


def _clean_stale_staging(target: Path) -> None:
    """Staging folders an interrupted install left behind are never the live set."""
    prefix = HostPaths.staging_prefix(target)
    if target.parent.is_dir():
        for stale in target.parent.iterdir():
            if stale.name.startswith(prefix):
                fsops.remove_tree(stale)


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
    if link is None:
        return True
    return link.path.is_symlink() and str(link.path.readlink()) == link.target


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
    except OSError:
        temporary.unlink(missing_ok=True)
        if aside is not None:
            aside.rename(link.path)
        raise
    messages.append(f"linked {link.path} -> {link.target}")
    return messages
