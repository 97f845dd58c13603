"""Validate a package for one component and turn it into a plan of what goes where.

Nothing here writes. Everything knowable before writing is checked here, so ``--dry-run``
and a refusal both come before the first byte: the package, the paths, what is installed.
"""

from __future__ import annotations

import datetime as dt
import stat
from dataclasses import dataclass, field
from pathlib import Path

from certserver.archive import OpenedPackage
from certserver.errors import CertserverError, InstallRefused
from certserver.files import read_regular_file
from certserver.identity import Ccid, Component
from certserver.install.owners import Owner, can_chown, owner_for
from certserver.install.paths import MARKERS, HostPaths, link_points_to, link_target
from certserver.mtls import identity_of
from certserver.package import fingerprint
from certserver.pem import ParseError, parse
from certserver.verify import ComponentSet, Status, check_set

DIR_MODE = 0o700
FILE_MODE = 0o600
MAX_FILE = 1 << 20
#: Components an operator installs; the broker's files come with ``esb``.
INSTALLABLE = tuple(c for c in Component if not c.is_broker)


@dataclass(frozen=True, slots=True)
class PlannedFile:
    name: str
    data: bytes = field(repr=False)
    mode: int = FILE_MODE


@dataclass(frozen=True, slots=True)
class PlannedDir:
    """One folder to put in place whole: the component folder, or the broker's certs folder."""

    component: Component
    path: Path
    owner: Owner
    files: tuple[PlannedFile, ...]
    mode: int = DIR_MODE


@dataclass(frozen=True, slots=True)
class PlannedLink:
    path: Path
    folder: Path
    target: str  # relative, so the link works inside a --prefix tree and on the real root


@dataclass(frozen=True, slots=True)
class InstallPlan:
    component: Component
    source: str
    ccid: Ccid
    paths: HostPaths
    dirs: tuple[PlannedDir, ...]
    link: PlannedLink | None
    chown: bool
    force: bool
    warnings: tuple[str, ...]

    def describe(self) -> list[str]:
        """Every path with its owner and mode, as ``--dry-run`` prints it."""
        lines = []
        for planned in self.dirs:
            owner = planned.owner if self.chown else "(unchanged: not root)"
            lines.append(f"{planned.path}/  dir {planned.mode:04o}  {owner}")
            lines += [f"{planned.path / f.name}  file {f.mode:04o}  {owner}" for f in planned.files]
            if planned.path.exists():
                lines.append(f"{HostPaths.previous(planned.path)}/  the set it replaces")
        if self.link is not None:
            lines.append(f"{self.link.path} -> {self.link.target}  symlink")
        return lines


def plan_install(
    package: OpenedPackage,
    component: Component,
    paths: HostPaths,
    *,
    broker_owner: Owner | None,
    now: dt.datetime,
    force: bool = False,
) -> InstallPlan:
    """Check the whole package for ``component`` and plan its install; InstallRefused if not."""
    if component not in INSTALLABLE:
        raise InstallRefused(package.source, [f"{component} is installed with esb"])
    problems = list(package.problems) + paths.problems(component)
    warnings: list[str] = []
    chown = can_chown()
    if not chown:
        warnings.append("not running as root: owners are left as they are")
    dirs: list[PlannedDir] = []
    for member in component.installed_with:
        files = _files(package, member, problems)
        if files is None:
            continue
        findings, _ = check_set(_component_set(member, files), now, expect_ccid=package.ccid)
        problems += [f"{f.check}: {f.message}" for f in findings if f.status is Status.FAIL]
        warnings += [f"{f.check}: {f.message}" for f in findings if f.status is Status.WARN]
        folder = paths.folder(member)
        problems += _target_problems(folder, member, files, package.ccid, force=force)
        dirs.append(PlannedDir(member, folder, owner_for(member, broker_owner, chown=chown), files))
    link = None
    if paths.tomcat_link is not None:
        folder = paths.folder(component)
        link = PlannedLink(paths.tomcat_link, folder, link_target(paths.tomcat_link, folder))
        problems += _link_problems(link, force=force)
    if problems:
        raise InstallRefused(package.source, problems)
    return InstallPlan(
        component,
        package.source,
        package.ccid,
        paths,
        tuple(dirs),
        link,
        chown,
        force,
        tuple(warnings),
    )


def _files(
    package: OpenedPackage, component: Component, problems: list[str]
) -> tuple[PlannedFile, ...] | None:
    wanted = [component.cert_file, component.key_file, component.ca_file]
    for optional in (component.chain_file, component.links_file):
        if optional and package.file(component, optional) is not None:
            wanted.append(optional)
    members = {name: package.file(component, name) for name in wanted}
    missing = [name for name, member in members.items() if member is None]
    if missing:
        problems.append(f"{component.folder}: package lacks {', '.join(missing)}")
        return None
    return tuple(PlannedFile(name, member.data) for name, member in members.items() if member)


def _component_set(component: Component, files: tuple[PlannedFile, ...]) -> ComponentSet:
    by_name = {f.name: f.data for f in files}
    return ComponentSet(
        component,
        by_name[component.cert_file],
        by_name[component.key_file],
        by_name[component.ca_file],
        by_name.get(component.chain_file) if component.chain_file else None,
    )


def installed_set(component: Component, folder: Path) -> ComponentSet:
    """The files installed in ``folder``; FileProblem when one is missing or not a file."""

    def read(name: str) -> bytes:
        return read_regular_file(folder / name, MAX_FILE, "a certificate or key file")

    chain = component.chain_file
    has_chain = chain is not None and (folder / chain).exists()
    return ComponentSet(
        component,
        read(component.cert_file),
        read(component.key_file),
        read(component.ca_file),
        read(chain) if chain is not None and has_chain else None,
    )


def _target_problems(
    folder: Path, component: Component, files: tuple[PlannedFile, ...], ccid: Ccid, *, force: bool
) -> list[str]:
    """What is at ``folder`` now, and whether replacing it is safe."""
    try:
        info = folder.lstat()
    except FileNotFoundError:
        return []
    except OSError as exc:
        return [f"{folder}: {exc.strerror}"]
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return [f"{folder} is not a real folder; move it away first"]
    problems = []
    extra = sorted(p.name for p in folder.iterdir() if p.name not in component.file_names | MARKERS)
    if extra and not force:
        problems.append(
            f"{folder} holds more than a certificate set ({', '.join(extra)}); "
            "is it the right folder? (--force replaces it whole)"
        )
    if not force:
        problems += _other_deployment(folder, component, files, ccid)
    return problems


def _other_deployment(
    folder: Path, component: Component, files: tuple[PlannedFile, ...], ccid: Ccid
) -> list[str]:
    """Refusals when ``folder`` holds another deployment's set, or one of another CA."""
    try:
        installed = installed_set(component, folder)
        installed_ccid = identity_of(parse(installed.certificate).certificates[0]).ccid
        installed_anchors = {fingerprint(c) for c in parse(installed.anchors).certificates}
    except (CertserverError, ParseError, IndexError):
        return []  # nothing usable there: replacing it loses no identity
    if installed_ccid != ccid:
        return [f"{folder} holds deployment {installed_ccid}, this package is {ccid} (--force)"]
    new_anchors = {
        fingerprint(c)
        for f in files
        if f.name == component.ca_file
        for c in parse(f.data).certificates
    }
    if not installed_anchors & new_anchors:
        return [f"{folder} trusts another CA than this package for the same deployment (--force)"]
    return []


def _link_problems(link: PlannedLink, *, force: bool) -> list[str]:
    path = link.path
    if link_points_to(path, link.folder) or force:
        return []
    if path.is_symlink():
        try:
            points_elsewhere = path.resolve(strict=True).exists()
        except (OSError, RuntimeError):
            points_elsewhere = False
        if points_elsewhere:
            return [f"the Tomcat link {path} points to {path.readlink()} (--force repoints it)"]
        return []  # dangling: repaired
    if path.exists():
        kind = "folder" if path.is_dir() else "file"
        return [f"{path} is a real {kind}, not a link (--force moves it aside)"]
    return []
