"""Who may use the service: API tokens and client certificates, each with a role.

A token is shown once, when it is made: ``cst_<id>_<secret>``. The store keeps only the
SHA-256 of the whole token (a random 256-bit secret needs no slow hash), so a copy of the
store gives no token away. A client certificate is known by its SHA-256 fingerprint.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from certserver.errors import CertserverError, InvalidInput

TOKEN_PREFIX = "cst_"  # noqa: S105 - a prefix, not a secret
_TOKEN_RE = re.compile(r"cst_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}")


class Role(enum.StrEnum):
    #: manages: creates deployments, downloads packages, signs, imports
    SYSADMIN = "sysadmin"
    #: reads: lists and shows deployments and the audit log; cannot download or change
    AUDITOR = "auditor"


class CredentialKind(enum.StrEnum):
    TOKEN = "token"  # noqa: S105 - a kind, not a secret
    CLIENT_CERT = "client-cert"


class Unauthenticated(CertserverError):
    """No credential, or one that is unknown, expired or revoked (never says which)."""

    code = "unauthenticated"


class Forbidden(CertserverError):
    """A known credential whose role may not do this."""

    code = "forbidden"


@dataclass(frozen=True, slots=True)
class Credential:
    credential_id: str
    kind: CredentialKind
    name: str
    role: Role
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None

    def usable(self, now: dt.datetime) -> bool:
        expired = self.expires_at is not None and now >= self.expires_at
        return self.revoked_at is None and not expired

    @property
    def actor(self) -> str:
        """How the audit log names it."""
        return f"{self.kind}:{self.credential_id} ({self.name})"


@dataclass(frozen=True, slots=True)
class NewToken:
    credential_id: str
    #: The token itself: shown once, never stored.
    token: str

    @property
    def secret_sha256(self) -> str:
        return token_sha256(self.token)


def check_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid credential name {name!r}: 1-64 letters, digits, spaces and ._@-"
        )
    return name


def new_token() -> NewToken:
    credential_id = secrets.token_hex(8)
    return NewToken(credential_id, f"{TOKEN_PREFIX}{credential_id}_{secrets.token_urlsafe(32)}")


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_token(token: str) -> str | None:
    """The credential id of a well-formed token, else None."""
    found = _TOKEN_RE.fullmatch(token)
    return found.group(1) if found else None


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def parse_duration(text: str) -> dt.timedelta:
    """``90d``, ``12h``, ``30m``: how long a token lives."""
    found = re.fullmatch(r"\s*(\d{1,6})\s*([dhm])\s*", text)
    if not found:
        raise InvalidInput(f"invalid duration {text!r}: expected e.g. 90d, 12h or 30m")
    amount, unit = int(found.group(1)), found.group(2)
    if amount < 1:
        raise InvalidInput(f"invalid duration {text!r}: must be at least 1{unit}")
    return {"d": dt.timedelta(days=amount), "h": dt.timedelta(hours=amount)}.get(
        unit, dt.timedelta(minutes=amount)
    )
