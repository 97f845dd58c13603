"""Settings from the environment (``CERTSERVER_*``), read when asked for, never at import."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from certserver.errors import InvalidInput

DATABASE_FILE = "certserver.db"
MASTER_KEY_FILE = "master.key"
_MAX_TIMEOUT = 3600


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    database_url: str
    master_key_file: Path
    #: True when the master key lives at its default place in the home (then, and only
    #: then, certserver may create it).
    master_key_is_default: bool
    busy_timeout: float = 5.0
    #: Where the service is reached (``CERTSERVER_BASE_URL``): new certificates then name
    #: its CRL and OCSP URLs.
    base_url: str | None = None

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file when the store is the embedded default."""
        if self.database_url == default_database_url(self.home):
            return self.home / DATABASE_FILE
        return None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("CERTSERVER_HOME") or _default_home(env)).expanduser()
        database_url = env.get("CERTSERVER_DATABASE_URL") or default_database_url(home)
        named_key = env.get("CERTSERVER_MASTER_KEY_FILE")
        master_key = Path(named_key).expanduser() if named_key else home / MASTER_KEY_FILE
        timeout_text = env.get("CERTSERVER_BUSY_TIMEOUT", "5")
        try:
            timeout = float(timeout_text)
        except ValueError:
            timeout = math.nan
        if not 0 <= timeout <= _MAX_TIMEOUT:  # also refuses nan
            raise InvalidInput(
                f"CERTSERVER_BUSY_TIMEOUT={timeout_text!r}: expected seconds from 0 to "
                f"{_MAX_TIMEOUT}"
            )
        base_url = (env.get("CERTSERVER_BASE_URL") or "").strip().rstrip("/") or None
        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise InvalidInput(f"CERTSERVER_BASE_URL={base_url!r}: expected an http(s) URL")
        return cls(home, database_url, master_key, not named_key, timeout, base_url)


def default_database_url(home: Path) -> str:
    return f"sqlite:///{home / DATABASE_FILE}"


def _default_home(env: Mapping[str, str]) -> Path:
    data_home = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", "~")) / ".local" / "share")
    return Path(data_home) / "certserver"
