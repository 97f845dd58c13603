"""``certserver master-key create FILE``: a new master key for ``CERTSERVER_MASTER_KEY_FILE``."""

from __future__ import annotations

from pathlib import Path

import click

from certserver.masterkey import MasterKey


@click.group("master-key")
def master_key() -> None:
    """The key that seals private keys in the store."""


@master_key.command("create")
@click.argument("file", type=click.Path(path_type=Path))
def create(file: Path) -> None:
    """Write a new master key to FILE (mode 0600; an existing file is refused).

    Only for a store that has none yet: a store remembers the key it was sealed with.
    """
    key = MasterKey.create(file)
    click.echo(f"{file}: master key {key.key_id}")
