"""Validate a package for one component and turn it into a plan of what goes where.

Nothing here writes: the plan is what ``--dry-run`` prints and what :mod:`.apply` carries out.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from certserver.archive import OpenedPackage
from certserver.errors import CertserverError
from certserver.identity import Ccid, Component
from certserver.install.owners import Owner, can_chown
from certserver.install.paths import HostPaths
from certserver.mtls import identity_of
from certserver.verify import ComponentSet, Status, check_set

DIR_MODE = 0o700
FILE_MODE = 0o600
#: Components an operator installs; the broker's files come with ``esb``.
INSTALLABLE = tuple(c for c in Component if not c.is_broker)


class InstallRefused(CertserverError):
    """The package, or what is installed, does not allow this install. Lists every reason."""

    code = "install-refused"

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: refused: " + "; ".join(problems))
        self.problems = problems


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
    target: str  # relative, so the link works inside a --prefix tree and on the real root


@dataclass(frozen=True, slots=True)
class InstallPlan:
    component: Component
    source: str
    ccid: Ccid
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
            lines.append(f"{HostPaths.previous(planned.path)}/  the set replaced, for rollback")
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
    problems = list(package.problems)
    warnings: list[str] = []
    sets = [component, Component.ESB_BROKER] if component is Component.ESB else [component]
    chown = can_chown()
    if not chown:
        warnings.append("not running as root: owners are left as they are")
    dirs: list[PlannedDir] = []
    for member in sets:
        files = _files(package, member, problems)
        if files is None:
            continue
        findings, _ = check_set(_component_set(member, files), now, expect_ccid=package.ccid)
        problems += [f"{f.check}: {f.message}" for f in findings if f.status is Status.FAIL]
        warnings += [f"{f.check}: {f.message}" for f in findings if f.status is Status.WARN]
        folder = paths.folder(member)
        if not force:
            problems += _installed_elsewhere(folder, member, package.ccid)
        owner = broker_owner if member.is_broker and broker_owner else Owner.root()
        dirs.append(PlannedDir(member, folder, owner if chown else Owner.current(), files))
    if problems:
        raise InstallRefused(package.source, problems)
    link = None
    if paths.tomcat_link is not None:
        target = paths.folder(component)
        link = PlannedLink(paths.tomcat_link, os.path.relpath(target, paths.tomcat_link.parent))
    return InstallPlan(
        component, package.source, package.ccid, tuple(dirs), link, chown, force, tuple(warnings)
    )


def _files(
    package: OpenedPackage, component: Component, problems: list[str]
) -> tuple[PlannedFile, ...] | None:
    wanted = [component.cert_file, component.key_file, component.ca_file]
    missing = [name for name in wanted if package.file(component, name) is None]
    if missing:
        problems.append(f"{component.folder}: package lacks {', '.join(missing)}")
        return None
    names = [*wanted]
    if component.chain_file and package.file(component, component.chain_file) is not None:
        names.append(component.chain_file)
    return tuple(PlannedFile(name, package.file(component, name).data) for name in names)  # type: ignore[union-attr]


def _component_set(component: Component, files: tuple[PlannedFile, ...]) -> ComponentSet:
    by_name = {f.name: f.data for f in files}
    return ComponentSet(
        component,
        by_name[component.cert_file],
        by_name[component.key_file],
        by_name[component.ca_file],
        by_name.get(component.chain_file) if component.chain_file else None,
    )


def installed_set(component: Component, folder: Path) -> ComponentSet | None:
    """The files installed in ``folder`` (None where the folder or a file is missing)."""
    try:
        chain = folder / component.chain_file if component.chain_file else None
        return ComponentSet(
            component,
            (folder / component.cert_file).read_bytes(),
            (folder / component.key_file).read_bytes(),
            (folder / component.ca_file).read_bytes(),
            chain.read_bytes() if chain is not None and chain.exists() else None,
        )
    except OSError:
        return None


def _installed_elsewhere(folder: Path, component: Component, ccid: Ccid) -> list[str]:
    """A refusal when ``folder`` holds another deployment's set (``--force`` replaces it)."""
    try:
        cert = x509.load_pem_x509_certificate((folder / component.cert_file).read_bytes())
        installed = identity_of(cert).ccid
    except (OSError, ValueError, CertserverError):
        return []
    if installed == ccid:
        return []
    return [f"{folder} holds deployment {installed}, this package is {ccid} (--force replaces it)"]
