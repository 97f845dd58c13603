"""The service's accounts: API credentials and the audit log."""

from __future__ import annotations

import datetime as dt
import secrets

from cryptography import x509

from certserver.accounts import (
    Credential,
    CredentialKind,
    Role,
    Unauthenticated,
    check_name,
    new_token,
    parse_token,
    same_digest,
    token_sha256,
)
from certserver.audit import AuditEntry
from certserver.errors import (
    InvalidInput,
)
from certserver.opening import never_created
from certserver.package import fingerprint
from certserver.usecases import UseCases
from certserver.usecases import audited as _audited


class AccountCases(UseCases):
    @_audited("credential.create", lambda name, *_a, **_k: str(name))
    def create_token(
        self, name: str, role: Role, expires_in: dt.timedelta | None = None
    ) -> tuple[Credential, str]:
        """A new API token: the credential, and the token itself (shown once, not kept)."""
        made = new_token()
        now = self._now()
        credential = Credential(
            credential_id=made.credential_id,
            kind=CredentialKind.TOKEN,
            name=check_name(name),
            role=role,
            created_at=now,
            expires_at=now + expires_in if expires_in else None,
            revoked_at=None,
        )
        self._open_store(create=True).add_credential(credential, made.secret_sha256)
        return credential, made.token

    @_audited("credential.create", lambda name, *_a, **_k: str(name))
    def add_client_certificate(
        self, name: str, role: Role, cert: x509.Certificate, expires_in: dt.timedelta | None = None
    ) -> Credential:
        """A client certificate as a credential, known by its SHA-256 fingerprint."""
        now = self._now()
        credential = Credential(
            credential_id=secrets.token_hex(8),
            kind=CredentialKind.CLIENT_CERT,
            name=check_name(name),
            role=role,
            created_at=now,
            expires_at=now + expires_in if expires_in else None,
            revoked_at=None,
        )
        self._open_store(create=True).add_credential(credential, fingerprint(cert))
        return credential

    def credentials(self) -> list[Credential]:
        return self._open_store(create=False).list_credentials()

    @_audited("credential.revoke", lambda credential_id, *_a, **_k: str(credential_id))
    def revoke_credential(self, credential_id: str) -> Credential:
        revoked = self._open_store(create=False).revoke_credential(credential_id, self._now())
        if revoked is None:
            raise InvalidInput(f"no credential {credential_id!r} (or it is already revoked)")
        return revoked

    def authenticate_token(self, token: str) -> Credential:
        """The credential of a usable token; :class:`Unauthenticated` otherwise."""
        if parse_token(token) is None:
            raise Unauthenticated("not a certserver token")
        return self._usable(token_sha256(token))

    def authenticate_certificate(self, cert_fingerprint: str) -> Credential:
        return self._usable(cert_fingerprint)

    def _usable(self, digest: str) -> Credential:
        found = self._open_store(create=True).credential_by_digest(digest)
        if found is None or not same_digest(found[1], digest) or not found[0].usable(self._now()):
            raise Unauthenticated("unknown, expired or revoked credential")
        return found[0]

    def audit_entries(self, *, limit: int = 100, offset: int = 0) -> list[AuditEntry]:
        if never_created(self.settings):
            return []
        return self._open_store(create=False).list_audit(limit=limit, offset=offset)

    def record(self, action: str, target: str, result: str, detail: str = "") -> None:
        """An audit entry for something refused before any use case ran (a credential
        without the role for it)."""
        self._open_store(create=True)
        self._audit(action, target, result, detail)
