"""Bring a store's schema to the head revision with Alembic (skipped when already there).

Alembic is imported only when a migration has to run: reading the current revision is one
query, and most commands find the schema current.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import Connection

from certserver.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

#: The newest migration; a test checks it against the scripts.
SCHEMA_HEAD = "0007"
_MIGRATIONS = Path(__file__).with_name("migrations")
_VERSION_TABLE = "alembic_version"


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def script_head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The store's schema revision (None for an empty database), as Alembic records it."""
    if not sa.inspect(connection).has_table(_VERSION_TABLE):
        return None
    versions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    if len(versions) > 1:
        raise StoreError("store schema has several heads; it was not made by certserver")
    return str(versions[0][0]) if versions else None


def upgrade(connection: Connection) -> None:
    """Migrate to head. Refuses a store made by a newer certserver."""
    current = current_revision(connection)
    if current == SCHEMA_HEAD:
        return
    from alembic import command
    from alembic.script import ScriptDirectory

    known = {
        script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    }
    if current is not None and current not in known:
        raise StoreError(f"store schema {current!r} is newer than this certserver; upgrade it")
    command.upgrade(alembic_config(connection), "head")
