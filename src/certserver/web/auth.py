"""Who is calling: a bearer token, the web page's session cookie, or a client certificate;
and whether their role allows what they ask. Refused attempts at changes and downloads are
audited; a token never reaches a log."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from fastapi import Request

from certserver.accounts import Credential, Forbidden, Role, Unauthenticated
from certserver.audit import Actor
from certserver.errors import CertserverError
from certserver.identity import DeploymentName
from certserver.service import CertServer

SESSION_COOKIE = "certserver_session"
_ALLOWED = {Role.SYSADMIN: {Role.SYSADMIN, Role.AUDITOR}, Role.AUDITOR: {Role.AUDITOR}}


@dataclass(frozen=True, slots=True)
class Caller:
    credential: Credential
    service: CertServer  # acting as this caller (audit entries name it)


def service_of(request: Request) -> CertServer:
    service: CertServer = request.app.state.service
    return service


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def token_of(request: Request) -> str | None:
    """The bearer token. The web page's cookie is not a credential for the API: a form on
    another page of the same site could otherwise make a signed-in browser call it."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("use Authorization: Bearer <token>")
    return token.strip()


def client_certificate(request: Request) -> x509.Certificate | None:
    tls = (request.scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    return x509.load_pem_x509_certificate(chain[0].encode("ascii"))


def authenticate(request: Request) -> Credential:
    service = service_of(request)
    token = token_of(request)
    if token is not None:
        return service.authenticate_token(token)
    cert = client_certificate(request)
    if cert is not None:
        from certserver.package import fingerprint

        return service.authenticate_certificate(fingerprint(cert))
    raise Unauthenticated("no credential: send Authorization: Bearer <token>")


def require(role: Role, action: str | None = None) -> Callable[[Request], Caller]:
    """A dependency: the caller, if their credential is usable and has ``role`` (a sysadmin
    has every role). For a change or download (``action``), a refusal is audited too."""

    def dependency(request: Request) -> Caller:
        service = service_of(request)
        source = client_address(request)
        target = audit_target(str(request.path_params.get("name", "")))
        try:
            credential = authenticate(request)
        except Unauthenticated as exc:
            if action is not None:
                service.for_actor(Actor("anonymous", source)).record(action, target, exc.code)
            raise
        acting = service.for_actor(Actor(credential.actor, source))
        caller = Caller(credential, acting)
        if role not in _ALLOWED[credential.role]:
            refused = Forbidden(f"the {credential.role} role may not do this (needs {role})")
            if action is not None:
                caller.service.record(action, target, refused.code, refused.message)
            raise refused
        if action is not None:
            # refused later (bad input) before any use case ran: the error handler audits it
            request.state.pending_audit = (acting, action, target)
            acting.on_audit = lambda: setattr(request.state, "pending_audit", None)
        return caller

    return dependency


def audit_pending(request: Request, code: str, detail: str) -> None:
    """Audit a change or download the API refused before its use case could (see
    :func:`require`)."""
    pending = getattr(request.state, "pending_audit", None)
    if pending is not None:
        acting, action, target = pending
        request.state.pending_audit = None
        acting.record(action, target, code, detail)


def audit_target(name: str) -> str:
    """A deployment name as the audit log may show it (raw input never reaches the log)."""
    try:
        return DeploymentName(name).value
    except CertserverError:
        return ""


def csrf_token(session_token: str) -> str:
    """The web page's form token, bound to the session's credential."""
    return hmac.new(session_token.encode(), b"certserver csrf", hashlib.sha256).hexdigest()
