"""Bring a store's schema to the head revision with Alembic (skipped when already there)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from certserver.errors import StoreError

#: The newest migration; a test checks it against the scripts. Saves loading Alembic's
#: script directory on every command when the schema is current.
SCHEMA_HEAD = "0001"
_MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def script_head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection) -> None:
    """Migrate to head. Refuses a store made by a newer certserver."""
    current = current_revision(connection)
    if current == SCHEMA_HEAD:
        return
    known = {
        script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    }
    if current is not None and current not in known:
        raise StoreError(f"store schema {current!r} is newer than this certserver; upgrade it")
    command.upgrade(alembic_config(connection), "head")
