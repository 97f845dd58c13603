"""The REST API: every route is a thin call into :mod:`certserver.service`."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from certserver.accounts import Role
from certserver.errors import CertserverError, FileProblem, InvalidInput
from certserver.hosts import MAX_HOSTS, Host, merge_hosts
from certserver.identity import Component, DeploymentName
from certserver.keys import KeySpec
from certserver.plain import plain
from certserver.profiles import (
    COMPONENT_VALIDITY_DAYS,
    DEFAULT_ORGANIZATION,
    CaMode,
    Organization,
)
from certserver.service import CreateRequest, Supplied
from certserver.store import DeploymentQuery, DeploymentState
from certserver.web.auth import Caller, require, service_of

MAX_UPLOAD = 1 << 20
router = APIRouter(prefix="/api/v1")

Reader = Annotated[Caller, Depends(require(Role.AUDITOR))]


def _admin(action: str) -> Any:
    return Depends(require(Role.SYSADMIN, action))


class CreateDeployment(BaseModel):
    name: str = Field(min_length=1, max_length=63, examples=["prod-eu"])
    organization: str = Field(DEFAULT_ORGANIZATION.value, min_length=1, max_length=64)
    hosts: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Host names or IPs per component folder; 'all' for every component.",
        examples=[{"all": ["localhost", "127.0.0.1"], "ccm": ["ccm.example.com"]}],
    )
    key_type: KeySpec = KeySpec.EC_P256
    validity_days: int = Field(COMPONENT_VALIDITY_DAYS, ge=1, le=3650)
    ca_mode: CaMode = CaMode.CERTSERVER


def _hosts(given: dict[str, list[str]]) -> dict[Component, tuple[Host, ...]]:
    if sum(len(names) for names in given.values()) > 10 * MAX_HOSTS:
        raise InvalidInput(f"too many hosts: at most {MAX_HOSTS} names per component")
    return merge_hosts((target, [Host.parse(n) for n in names]) for target, names in given.items())


def _name(name: str) -> DeploymentName:
    return DeploymentName(name)


def _attachment(data: bytes, file_name: str, media_type: str) -> Response:
    return Response(
        data,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{file_name}"'},
    )


async def _upload(upload: UploadFile, what: str) -> Supplied:
    data = await upload.read(MAX_UPLOAD + 1)
    source = upload.filename or what
    if len(data) > MAX_UPLOAD:
        raise FileProblem(source, f"too large to be {what}")
    return Supplied(source, data)


@router.get("/deployments", summary="List deployments")
def list_deployments(
    caller: Reader,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    state: DeploymentState | None = None,
    ca_mode: CaMode | None = None,
    name_prefix: Annotated[str | None, Query(max_length=63)] = None,
) -> dict[str, Any]:
    query = DeploymentQuery(state, ca_mode, name_prefix, limit, offset)
    page = caller.service.list_deployments(query)
    total = caller.service.count_deployments(replace(query, limit=None, offset=0))
    return {"items": plain(page), "total": total, "limit": limit, "offset": offset}


@router.post("/deployments", status_code=201, summary="Create a deployment")
def create_deployment(
    body: CreateDeployment, caller: Annotated[Caller, _admin("deployment.create")]
) -> JSONResponse:
    request = CreateRequest(
        name=DeploymentName(body.name),
        organization=Organization(body.organization),
        hosts=_hosts(body.hosts),
        key_spec=body.key_type,
        validity_days=body.validity_days,
        ca_mode=body.ca_mode,
    )
    result = caller.service.create_deployment(request)
    name = result.deployment.name.value
    link = (
        f"/api/v1/deployments/{name}/package"
        if result.deployment.state is DeploymentState.READY
        else f"/api/v1/deployments/{name}/requests"
    )
    return JSONResponse(
        {"deployment": plain(result.deployment), "download": link},
        status_code=201,
        headers={"Location": f"/api/v1/deployments/{name}"},
    )


@router.get("/deployments/{name}", summary="Show a deployment")
def show_deployment(name: str, caller: Reader) -> Any:
    return plain(caller.service.show_deployment(_name(name)))


@router.get(
    "/deployments/{name}/package",
    summary="Download the package (audited)",
    responses={200: {"content": {"application/zip": {}}}},
)
def download_package(name: str, caller: Annotated[Caller, _admin("package.download")]) -> Response:
    file_name, data = caller.service.package_bytes(_name(name))
    return _attachment(data, file_name, "application/zip")


@router.get(
    "/deployments/{name}/ca.crt",
    summary="The deployment's trust anchors (public)",
    responses={200: {"content": {"application/x-pem-file": {}}}},
)
def ca_certificate(name: str, request: Request) -> Response:
    data = service_of(request).ca_certificates(_name(name))
    return Response(data, media_type="application/x-pem-file")


@router.get(
    "/deployments/{name}/requests",
    summary="The CSR(s) an enterprise CA is to sign",
    responses={200: {"content": {"application/zip": {}, "application/pkcs10": {}}}},
)
def pending_requests(name: str, caller: Reader) -> Response:
    file_name, data = caller.service.pending_requests(_name(name))
    media = "application/zip" if file_name.endswith(".zip") else "application/pkcs10"
    return _attachment(data, file_name, media)


@router.post(
    "/deployments/{name}/sign",
    summary="Sign a component's CSR under policy",
    responses={200: {"content": {"application/x-pem-file": {}}}},
)
async def sign_csr(
    name: str,
    component: Annotated[str, Query(description="component folder, e.g. cco")],
    csr: Annotated[UploadFile, File(description="the CSR, PEM or DER")],
    caller: Annotated[Caller, _admin("certificate.sign-csr")],
) -> Response:
    from cryptography.hazmat.primitives.serialization import Encoding

    supplied = await _upload(csr, "a CSR")
    # the store's round trips and commit must not hold up the event loop's other requests
    cert = await run_in_threadpool(
        caller.service.sign_csr,
        _name(name),
        Component.parse(component),
        supplied.data,
        supplied.source,
    )
    return Response(cert.public_bytes(Encoding.PEM), media_type="application/x-pem-file")


@router.post("/deployments/{name}/import-ca", summary="Import the enterprise-signed CA")
async def import_ca(
    name: str,
    cert: Annotated[UploadFile, File()],
    chain: Annotated[UploadFile, File()],
    caller: Annotated[Caller, _admin("deployment.import-ca")],
) -> Any:
    result = caller.service.import_ca(
        _name(name), await _upload(cert, "a certificate"), await _upload(chain, "a chain")
    )
    return {"deployment": plain(result.deployment), "warnings": list(result.warnings)}


@router.post("/deployments/{name}/import-signed", summary="Import enterprise-signed certificates")
async def import_signed(
    name: str,
    files: Annotated[list[UploadFile], File()],
    chain: Annotated[UploadFile, File()],
    caller: Annotated[Caller, _admin("deployment.import-signed")],
    partial: Annotated[bool, Form()] = False,
) -> Any:
    if not files:
        raise InvalidInput("give at least one signed certificate")
    inputs = [await _upload(upload, "a certificate") for upload in files]
    result = caller.service.import_signed(
        _name(name), inputs, await _upload(chain, "a chain"), partial=partial
    )
    return {
        "deployment": plain(result.deployment),
        "imported": ["ca" if c is None else c.folder for c in result.imported],
        "problems": list(result.problems),
        "complete": result.package is not None,
    }


@router.get("/audit", summary="The audit log, newest first")
def audit(
    caller: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> Any:
    return {"items": plain(caller.service.audit_entries(limit=limit, offset=offset))}


@router.post(
    "/self/renew",
    summary="Self-renewal: a component's current certificate (over mutual TLS) and a CSR",
    responses={200: {"content": {"application/x-pem-file": {}}}},
)
async def self_renew(
    request: Request, csr: Annotated[UploadFile, File(description="CSR for the new key")]
) -> Response:
    from cryptography.hazmat.primitives.serialization import Encoding

    from certserver.accounts import Unauthenticated
    from certserver.audit import Actor
    from certserver.mtls import identity_of
    from certserver.web.auth import client_address, client_certificate

    peer = client_certificate(request)
    if peer is None:
        refused = Unauthenticated("self-renewal needs the component's certificate (mutual TLS)")
        anonymous = service_of(request).for_actor(Actor("anonymous", client_address(request)))
        anonymous.record("certificate.self-renew", "", refused.code, refused.message)
        raise refused
    try:
        who = identity_of(peer).spiffe_id
    except CertserverError:
        who = "unknown component"
    acting = service_of(request).for_actor(Actor(f"component:{who}", client_address(request)))
    supplied = await _upload(csr, "a CSR")
    cert = acting.renew_for_peer(peer, supplied.data)
    return Response(cert.public_bytes(Encoding.PEM), media_type="application/x-pem-file")
