"""Where a component's files go on its host (DESIGN.md §3.4), under an optional prefix."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from certserver.identity import Component

SSL_ROOT = Path("/usr/local/osmosix/ssl")
TOMCAT_SSL_LINK = Path("/usr/local/tomcat/conf/ssl")
RABBITMQ_CERTS = Path("/etc/rabbitmq/certs")
#: Written into an incoming set until its install or rollback commits, so recovery can tell
#: which folders were already swapped. Never part of a set.
NEW_MARKER = ".certserver-new"
ROLLBACK_MARKER = ".certserver-rollback"
MARKERS = frozenset({NEW_MARKER, ROLLBACK_MARKER})


def under(prefix: Path | None, path: Path) -> Path:
    """``path`` re-rooted under ``prefix`` (for tests and image builds)."""
    absolute = path if path.is_absolute() else Path.cwd() / path
    return prefix / absolute.relative_to(absolute.anchor) if prefix else absolute


@dataclass(frozen=True, slots=True)
class HostPaths:
    ssl_root: Path
    tomcat_link: Path | None
    rabbitmq_certs: Path

    @classmethod
    def resolve(
        cls,
        *,
        ssl_root: Path = SSL_ROOT,
        tomcat_link: Path | None = TOMCAT_SSL_LINK,
        rabbitmq_certs: Path = RABBITMQ_CERTS,
        prefix: Path | None = None,
    ) -> HostPaths:
        return cls(
            under(prefix, ssl_root),
            under(prefix, tomcat_link) if tomcat_link is not None else None,
            under(prefix, rabbitmq_certs),
        )

    def problems(self, component: Component) -> list[str]:
        """Paths that would make an install swap out something that is not a set."""
        folders = [self.folder(member).resolve() for member in component.installed_with]
        found = [f"{folder} is a root folder" for folder in folders if folder.parent == folder]
        found += [
            f"{folder} has a hidden name, which certserver keeps for its own folders"
            for folder in folders
            if folder.name.startswith(".")
        ]
        for index, folder in enumerate(folders):
            found += [
                f"{folder} and {other} overlap"
                for other in folders[index + 1 :]
                if overlaps(folder, other)
            ]
        if self.tomcat_link is not None:
            link = self.tomcat_link.parent.resolve() / self.tomcat_link.name
            found += [
                f"the Tomcat link {self.tomcat_link} overlaps {folder}"
                for folder in folders
                if overlaps(link, folder)
            ]
        return found

    def folder(self, component: Component) -> Path:
        """The installed folder of ``component`` (the broker's files are flat, elsewhere)."""
        return self.rabbitmq_certs if component.is_broker else self.ssl_root / component.folder

    @staticmethod
    def previous(folder: Path) -> Path:
        """Where the set before the current one is kept, for rollback."""
        return folder.with_name(f".{folder.name}.previous")

    @staticmethod
    def staging_prefix(folder: Path) -> str:
        return f".{folder.name}.staging-"


def link_points_to(link: Path, folder: Path) -> bool:
    """True when ``link`` is a symlink that resolves to ``folder`` (install and doctor agree)."""
    try:
        return link.is_symlink() and link.resolve(strict=True) == folder.resolve(strict=True)
    except (OSError, RuntimeError):  # dangling, or a loop
        return False


def link_target(link: Path, folder: Path) -> str:
    """A relative target for ``link`` -> ``folder``, computed on resolved paths."""
    return os.path.relpath(folder.resolve(), link.parent.resolve())


def overlaps(first: Path, second: Path) -> bool:
    return first == second or first in second.parents or second in first.parents
