"""Opening the store with its master key: the rules for a fresh, present or lost store."""

from __future__ import annotations

from pathlib import Path

from certserver.config import Settings
from certserver.errors import MasterKeyError, StoreMissing, TargetExists
from certserver.files import ensure_private_dir
from certserver.masterkey import MasterKey
from certserver.store import Store


def open_store(settings: Settings, *, create: bool) -> Store:
    """The store; ``create`` allows making it (and the home) on first use.

    Refuses to start an empty store where one was lost: an embedded store file that is
    missing or empty beside its master key at the default place.
    """
    key_path = settings.master_key_file
    sqlite = settings.sqlite_path
    if key_path.is_symlink() and not key_path.exists():
        raise MasterKeyError(f"{key_path}: master key is a dangling symlink")
    if (
        sqlite is not None
        and _missing_or_empty(sqlite)
        and settings.master_key_is_default
        and key_path.exists()
    ):
        raise StoreMissing(
            f"{sqlite}: store is missing but its master key {key_path} exists; "
            "restore the store, or move the key away to start a new one"
        )
    if create:
        if not settings.master_key_is_default and not key_path.exists():
            raise MasterKeyError(f"{key_path}: master key file is missing")
        ensure_private_dir(settings.home)
    return Store.open(settings.database_url, create=create, busy_timeout=settings.busy_timeout)


def never_created(settings: Settings) -> bool:
    """True for a fresh home: no embedded store and no master key yet."""
    sqlite = settings.sqlite_path
    return sqlite is not None and not sqlite.exists() and not settings.master_key_file.exists()


def master_key_for(settings: Settings, store: Store, *, create: bool) -> MasterKey:
    """The master key ``store`` was sealed with; made (and recorded) only for a fresh store."""
    path = settings.master_key_file
    expected = store.master_key_id()
    if expected is None:
        if path.exists():
            key = MasterKey.load(path)
        elif create and settings.master_key_is_default:
            try:
                key = MasterKey.create(path)
            except TargetExists:  # another first use made it a moment ago
                key = MasterKey.load(path)
        else:
            raise MasterKeyError(f"{path}: master key file is missing")
        if not create:
            return key
        expected = store.claim_master_key_id(key.key_id)
    if not path.exists():
        raise MasterKeyError(
            f"{path}: master key file is missing; store {store.location} is sealed with "
            f"key id {expected}, and certserver never makes a new key for an existing store"
        )
    key = MasterKey.load(path)
    if key.key_id != expected:
        raise MasterKeyError(
            f"{path}: wrong master key for store {store.location} "
            f"(file has key id {key.key_id}, store expects {expected})"
        )
    return key


def _missing_or_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except FileNotFoundError:
        return True
