"""The web page for support staff: server-rendered (Jinja2), no build step, no JavaScript
needed. Sign in with a token; see deployments and their days to expiry; create one and
download its zip; sign a CSR; read the audit log."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from certserver.accounts import Credential, Forbidden, Role, Unauthenticated
from certserver.audit import Actor
from certserver.clock import days_left, iso, utc_now
from certserver.errors import CertserverError, InvalidInput
from certserver.hosts import MAX_HOSTS, Host, merge_hosts
from certserver.identity import Component, DeploymentName
from certserver.keys import KeySpec
from certserver.profiles import Organization
from certserver.service import CertServer, CreateRequest
from certserver.web.auth import SESSION_COOKIE, client_address, csrf_token, service_of
from certserver.web.problems import status_of

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
_MAX_CSR = 1 << 20


def _urgency(days: int | None) -> str:
    if days is None:
        return "pending"
    if days < 0:
        return "expired"
    return "urgent" if days < 30 else "soon" if days < 90 else "ok"


class _Session:
    """The signed-in user of a page request, acting through the service as themselves."""

    def __init__(self, request: Request) -> None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            raise Unauthenticated("sign in first")
        base = service_of(request)
        self.credential: Credential = base.authenticate_token(token)
        self.csrf = csrf_token(token)
        self.service: CertServer = base.for_actor(
            Actor(self.credential.actor, client_address(request))
        )

    def check(self, csrf: str) -> None:
        if not hmac.compare_digest(csrf.encode(), self.csrf.encode()):
            raise Unauthenticated("the form is stale; sign in again")

    def require_sysadmin(self, action: str, target: str) -> None:
        """Like the API: an auditor's attempt at a change is refused (403) and audited."""
        if self.credential.role is Role.SYSADMIN:
            return
        refused = Forbidden(f"the {self.credential.role} role may not do this (needs sysadmin)")
        self.service.record(action, target, refused.code, refused.message)
        raise refused

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context.update(credential=self.credential, csrf=self.csrf)
        return templates.TemplateResponse(request, name, context, status_code=status)


def _session(request: Request) -> _Session | Response:
    try:
        return _Session(request)
    except CertserverError:
        return RedirectResponse("/ui/login", status_code=303)


@router.get("/login")
def login_form(request: Request) -> Response:
    return templates.TemplateResponse(request, "login.html", {"credential": None})


def _same_origin(request: Request) -> bool:
    """A form posted from this site: no Origin (older browsers, no JavaScript needed) or
    this server's own. Stops another site from signing a browser in as someone else."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return origin == f"{request.url.scheme}://{request.url.netloc}"


@router.post("/login")
def login(request: Request, token: Annotated[str, Form()]) -> Response:
    if not _same_origin(request):
        return templates.TemplateResponse(
            request,
            "login.html",
            {"credential": None, "error": "Sign in from this site's own page."},
            status_code=403,
        )
    try:
        service_of(request).authenticate_token(token.strip())
    except CertserverError:
        return templates.TemplateResponse(
            request,
            "login.html",
            {"credential": None, "error": "That token is unknown, expired or revoked."},
            status_code=401,
        )
    response = RedirectResponse("/ui/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token.strip(),
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="strict",
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Signs out only with the session's own form token: another site's post (which carries
    no cookie, SameSite=Strict) cannot clear the session."""
    response = RedirectResponse("/ui/login", status_code=303)
    token = request.cookies.get(SESSION_COOKIE)
    form = await request.form()
    sent = str(form.get("csrf", "")).encode()
    if token and hmac.compare_digest(sent, csrf_token(token).encode()):
        response.delete_cookie(
            SESSION_COOKIE,
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
    return response


@router.get("/")
def deployments(request: Request) -> Response:
    session = _session(request)
    if isinstance(session, Response):
        return session
    return _deployments_page(request, session)


def _deployments_page(
    request: Request,
    session: _Session,
    error: str | None = None,
    status: int = 200,
    form: dict[str, str] | None = None,
) -> Response:
    now = utc_now()
    rows = []
    for summary in session.service.list_deployments():
        days = days_left(summary.next_expiry, now) if summary.next_expiry else None
        rows.append(
            {
                "name": summary.name.value,
                "ccid": summary.ccid.value,
                "ca_mode": summary.ca_mode.value,
                "state": summary.state.value,
                "next_expiry": iso(summary.next_expiry) if summary.next_expiry else None,
                "days": days,
                "urgency": _urgency(days),
            }
        )
    return session.page(
        request,
        "deployments.html",
        status,
        rows=rows,
        error=error,
        key_types=[spec.value for spec in KeySpec],
        components=[c.folder for c in Component],
        form=form or {},
    )


@router.post("/deployments")
async def create(request: Request) -> Response:
    session = _session(request)
    if isinstance(session, Response):
        return session
    form = await request.form()
    # what was typed, to fill the form again when it is refused
    typed = {key: value for key, value in form.items() if isinstance(value, str) and key != "csrf"}
    try:
        session.check(str(form.get("csrf", "")))
        session.require_sysadmin("deployment.create", _audit_target(typed.get("name", "")))
        pairs = [("all", _host_list(str(form.get("hosts_all", ""))))]
        pairs += [(c.folder, _host_list(str(form.get(f"hosts_{c.folder}", "")))) for c in Component]
        hosts = {c: names for c, names in merge_hosts(pairs).items() if names}
        result = session.service.create_deployment(
            CreateRequest(
                name=DeploymentName(str(form.get("name", "")).strip()),
                organization=Organization(str(form.get("organization", "")).strip()),
                hosts=hosts,
                key_spec=KeySpec.parse(str(form.get("key_type", KeySpec.EC_P256.value))),
            )
        )
    except CertserverError as exc:
        return _deployments_page(request, session, exc.message, status_of(exc), typed)
    return RedirectResponse(f"/ui/deployments/{result.deployment.name}", status_code=303)


def _audit_target(name: str, component: str | None = None) -> str:
    """What a refused form names, for the audit log: only a valid name, never raw input."""
    try:
        target = DeploymentName(name.strip()).value
        return target if component is None else f"{target}/{Component.parse(component).folder}"
    except CertserverError:
        return ""


def _host_list(text: str) -> list[Host]:
    parts = [part for part in text.split(",") if part.strip()]
    if len(parts) > MAX_HOSTS:
        raise InvalidInput(f"too many hosts: at most {MAX_HOSTS} names per component")
    return [Host.parse(part) for part in parts]


@router.get("/deployments/{name}")
def deployment(request: Request, name: str) -> Response:
    session = _session(request)
    if isinstance(session, Response):
        return session
    try:
        view = session.service.show_deployment(DeploymentName(name))
    except CertserverError as exc:
        return _deployments_page(request, session, exc.message, status_of(exc))
    now = utc_now()
    components = [
        {
            "component": c.component.folder,
            "serial": c.serial,
            "not_after": iso(c.not_after),
            "days": days_left(c.not_after, now),
            "urgency": _urgency(days_left(c.not_after, now)),
            "hosts": ", ".join(h.text for h in c.hosts) or "-",
        }
        for c in view.components
    ]
    return session.page(request, "deployment.html", view=view, components=components)


@router.get("/deployments/{name}/package")
def package(request: Request, name: str) -> Response:
    session = _session(request)
    if isinstance(session, Response):
        return session
    try:
        session.require_sysadmin("package.download", _audit_target(name))
    except Forbidden:
        return _deployments_page(request, session, "Only a sysadmin may download packages.", 403)
    try:
        file_name, data = session.service.package_bytes(DeploymentName(name))
    except CertserverError as exc:
        return _deployments_page(request, session, exc.message, status_of(exc))
    return Response(
        data,
        media_type="application/zip",
        # it holds private keys: no browser or proxy cache may keep a copy
        headers={
            "Content-Disposition": f'attachment; filename="{file_name}"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/sign")
def sign_form(request: Request) -> Response:
    session = _session(request)
    if isinstance(session, Response):
        return session
    if session.credential.role is not Role.SYSADMIN:
        return _sign_page(request, session, "Only a sysadmin may sign CSRs.", 403)
    return _sign_page(request, session)


def _sign_page(
    request: Request, session: _Session, error: str | None = None, status: int = 200
) -> Response:
    names = [s.name.value for s in session.service.list_deployments()]
    components = [c.folder for c in Component]
    return session.page(
        request, "sign.html", status, names=names, components=components, error=error
    )


@router.post("/sign")
async def sign(
    request: Request,
    csr: Annotated[UploadFile, File()],
    deployment: Annotated[str, Form()],
    component: Annotated[str, Form()],
    csrf: Annotated[str, Form()],
) -> Response:
    session = _session(request)
    if isinstance(session, Response):
        return session
    try:
        session.check(csrf)
        session.require_sysadmin("certificate.sign-csr", _audit_target(deployment, component))
        data = await csr.read(_MAX_CSR + 1)
        if len(data) > _MAX_CSR:
            raise CertserverError(f"{csr.filename}: too large to be a CSR")
        cert = session.service.sign_csr(
            DeploymentName(deployment), Component.parse(component), data, csr.filename or "CSR"
        )
    except CertserverError as exc:
        return _sign_page(request, session, exc.message, status_of(exc))
    from cryptography.hazmat.primitives.serialization import Encoding

    return Response(
        cert.public_bytes(Encoding.PEM),
        media_type="application/x-pem-file",
        headers={"Content-Disposition": f'attachment; filename="{component}.crt"'},
    )


@router.get("/audit")
def audit(request: Request) -> Response:
    session = _session(request)
    if isinstance(session, Response):
        return session
    entries = [
        {
            "at": iso(e.at),
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "source": e.source,
            "result": e.result,
        }
        for e in session.service.audit_entries(limit=200)
    ]
    return session.page(request, "audit.html", entries=entries)
