"""The audit log: every change and every package download, who did it, from where, and how
it ended. Entries are written by the service layer (and, for refused credentials, by the
API), never with a secret in them."""

from __future__ import annotations

import datetime as dt
import getpass
from dataclasses import dataclass

OK = "ok"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, and from where (an address, or ``local`` for the command line).

    ``records_refusals``: whether refused attempts are written too (for the service's
    callers; the command line leaves the store as it was after a refusal).
    """

    name: str
    source: str = "local"
    records_refusals: bool = True

    @classmethod
    def local(cls) -> Actor:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        return cls(f"cli:{user}", "local", records_refusals=False)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: dt.datetime
    actor: str
    action: str
    target: str
    source: str
    result: str  # "ok", or the error code
    detail: str = ""
