"""Where a component's files go on its host (DESIGN.md §3.4), under an optional prefix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from certserver.identity import Component

SSL_ROOT = Path("/usr/local/osmosix/ssl")
TOMCAT_SSL_LINK = Path("/usr/local/tomcat/conf/ssl")
RABBITMQ_CERTS = Path("/etc/rabbitmq/certs")


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
