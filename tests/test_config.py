"""Settings come from the environment when asked for, with XDG defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from certserver.config import Settings
from certserver.errors import InvalidInput


def test_defaults_follow_xdg() -> None:
    settings = Settings.from_env({"HOME": "/home/ann"})
    assert settings.home == Path("/home/ann/.local/share/certserver")
    assert settings.database_url == "sqlite:////home/ann/.local/share/certserver/certserver.db"
    assert settings.master_key_file == settings.home / "master.key"
    assert settings.master_key_is_default
    assert settings.sqlite_path == settings.home / "certserver.db"
    xdg = Settings.from_env({"HOME": "/home/ann", "XDG_DATA_HOME": "/data"})
    assert xdg.home == Path("/data/certserver")


def test_explicit_settings_win() -> None:
    settings = Settings.from_env(
        {
            "CERTSERVER_HOME": "/srv/cs",
            "CERTSERVER_DATABASE_URL": "postgresql+psycopg://cs@db/cs",
            "CERTSERVER_MASTER_KEY_FILE": "/run/secrets/cs.key",
        }
    )
    assert settings.home == Path("/srv/cs")
    assert settings.database_url == "postgresql+psycopg://cs@db/cs"
    assert settings.sqlite_path is None
    assert settings.master_key_file == Path("/run/secrets/cs.key")
    assert not settings.master_key_is_default


def test_a_bad_timeout_is_refused() -> None:
    with pytest.raises(InvalidInput, match="CERTSERVER_BUSY_TIMEOUT"):
        Settings.from_env({"CERTSERVER_HOME": "/x", "CERTSERVER_BUSY_TIMEOUT": "soon"})


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e10"])
def test_an_out_of_range_timeout_is_refused(value: str) -> None:
    with pytest.raises(InvalidInput, match="expected seconds from 0 to 3600"):
        Settings.from_env({"CERTSERVER_HOME": "/x", "CERTSERVER_BUSY_TIMEOUT": value})
