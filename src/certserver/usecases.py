"""What every use case shares: the store and master key opened once, the actor the audit
log names, one audit entry per call (:func:`audited`), rows and files committed together."""

from __future__ import annotations

import contextvars
import copy
import dataclasses
import datetime as dt
import functools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Concatenate, ParamSpec, Self, TypeVar

from sqlalchemy import Connection

from certserver.audit import OK, Actor, AuditEntry
from certserver.authority import CertificateAuthority, PublicUrls
from certserver.clock import utc_now
from certserver.config import Settings
from certserver.errors import (
    CertserverError,
    FileProblem,
    StoreError,
    TargetExists,
)
from certserver.files import StagedFile, check_writable_dir
from certserver.identity import DeploymentName
from certserver.masterkey import MasterKey
from certserver.opening import master_key_for, open_store
from certserver.store import (
    Store,
)

Clock = Callable[[], dt.datetime]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_S = TypeVar("_S", bound="UseCases")


@dataclass
class _Call:
    """The audited use case in progress (in this thread or task), and whether its ``ok``
    entry was already committed together with its change."""

    action: str
    target: str
    written: bool = False


_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("certserver_call")


def audited(
    action: str, target: Callable[..., str]
) -> Callable[[Callable[Concatenate[_S, _P], _R]], Callable[Concatenate[_S, _P], _R]]:
    """Write one audit entry per call of the use case: its actor, action, target, and how it
    ended (``ok`` or the error's code). A use case whose change is one transaction writes
    the ``ok`` entry in it (:meth:`UseCases._ok_entry`); else it is written after."""

    def wrap(
        method: Callable[Concatenate[_S, _P], _R],
    ) -> Callable[Concatenate[_S, _P], _R]:
        def audited(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            about = target(*args, **kwargs)
            call = _Call(action, about)
            token = _CALL.set(call)
            try:
                result = method(self, *args, **kwargs)
            except CertserverError as exc:
                if self.actor.records_refusals and not call.written:
                    self._audit(action, about, exc.code, exc.message)
                raise
            except BaseException:
                if self.actor.records_refusals and not call.written:
                    self._audit(action, about, "error", "")
                raise
            finally:
                _CALL.reset(token)
            if not call.written:
                self._audit(action, about, OK, "")
            return result

        functools.update_wrapper(audited, method)
        return audited

    return wrap


def first_arg(name: object, *_args: object, **_kwargs: object) -> str:
    """The audit target of use cases whose first argument is the deployment's name."""
    return str(name)


@dataclass
class _Opened:
    """The store and master key, opened on first use and shared by actor views."""

    store: Store | None = None
    key: MasterKey | None = None
    writable: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class UseCases:
    """The base of certserver's use cases: one store and master key, opened on first use.

    ``actor`` is who the audit log names for the changes and downloads made through this
    object (the local user, for the command line); :meth:`for_actor` gives a view for
    another actor (an API caller) over the same store.
    """

    def __init__(
        self, settings: Settings, clock: Clock = utc_now, actor: Actor | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.actor = actor or Actor.local()
        self._opened = _Opened()
        self._owner = True
        #: Called after each audit entry this object writes (the API uses it to know that a
        #: refused request was audited already).
        self.on_audit: Callable[[], None] | None = None

    def for_actor(self, actor: Actor) -> Self:
        view = copy.copy(self)
        view.actor = actor
        view._owner = False
        return view

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if not self._owner:
            return
        opened = self._opened
        if opened.store is not None:
            opened.store.close()
            opened.store = None
        opened.key = None

    # -- shared internals ------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        return self.clock().astimezone(dt.UTC).replace(microsecond=0)

    def _commit(
        self,
        store: Store,
        target: Path | None,
        data: bytes | None,
        replace: bool,
        write: Callable[[Connection], object],
    ) -> None:
        """Rows and file together: ``write`` on a transaction, then the file placed before
        the commit; a failure of either leaves neither."""
        staged: StagedFile | None = None
        try:
            with store.transaction() as connection:
                write(connection)  # waits here if the store is busy
                entry = self._ok_entry()
                if entry is not None:  # committed with the change, or not at all
                    store.add_audit(entry, connection)
                if target is not None and data is not None:
                    staged = StagedFile(target, data)
                    staged.place(replace=replace)
        except BaseException:
            if staged is not None:
                staged.undo()
            raise
        self._ok_written()
        if staged is not None:
            staged.finish()

    def _open_store(self, *, create: bool) -> Store:
        opened = self._opened
        with opened.lock:
            if opened.store is not None and (opened.writable or not create):
                return opened.store
            store = open_store(self.settings, create=create)
            if opened.store is not None:
                opened.store.close()
            opened.store, opened.writable = store, create
            return store

    def _open(self, *, create: bool) -> tuple[Store, MasterKey]:
        """The store and the master key that belongs to it; checks that they match."""
        store = self._open_store(create=create)
        opened = self._opened
        with opened.lock:
            if opened.key is None:
                opened.key = master_key_for(self.settings, store, create=create)
            return store, opened.key

    def _publishing(self, ca: CertificateAuthority, name: DeploymentName) -> CertificateAuthority:
        """``ca``, naming the service's CRL and OCSP URLs in what it issues when a base URL
        is configured."""
        if self.settings.base_url is None:
            return ca
        return dataclasses.replace(ca, urls=PublicUrls.of(self.settings.base_url, name))

    def _ok_entry(self) -> AuditEntry | None:
        """The ``ok`` entry of the audited call in progress, to write on the transaction of
        its change (one commit for both; a change is never without its entry). None when
        no audited call is in progress or its entry is written."""
        call = _CALL.get(None)
        if call is None or call.written:
            return None
        return AuditEntry(
            self._now(), self.actor.name, call.action, call.target, self.actor.source, OK, ""
        )

    def _ok_written(self) -> None:
        """The change and its ``ok`` entry (from :meth:`_ok_entry`) are committed."""
        call = _CALL.get(None)
        if call is not None and not call.written:
            call.written = True
            if self.on_audit is not None:
                self.on_audit()

    def _audit(self, action: str, target: str, result: str, detail: str) -> None:
        store = self._opened.store
        if store is None:  # the store could not be opened: nothing to write to
            return
        entry = AuditEntry(
            self._now(), self.actor.name, action, target, self.actor.source, result, detail
        )
        try:
            store.add_audit(entry)
        except StoreError:
            if result == OK:
                raise
            return
        if self.on_audit is not None:
            self.on_audit()


def check_target(out_dir: Path, file_name: str, *, force: bool) -> Path:
    target = out_dir / file_name
    check_writable_dir(out_dir)
    if target.is_dir():
        raise FileProblem(target, "is a directory")
    if os.path.lexists(target) and not force:
        raise TargetExists(target, "already exists (use --force to replace it)")
    return target
