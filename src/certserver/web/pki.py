"""What relying parties fetch without credentials: OCSP answers and CRLs."""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Request
from fastapi.responses import Response

from certserver.identity import DeploymentName
from certserver.web.auth import service_of

router = APIRouter()
_MAX_OCSP = 16 << 10


@router.post(
    "/ocsp",
    summary="OCSP responder for the deployment CAs (RFC 6960)",
    responses={200: {"content": {"application/ocsp-response": {}}}},
)
async def ocsp_post(request: Request) -> Response:
    body = await request.body()
    return _answer(request, body[: _MAX_OCSP + 1])


@router.get(
    "/ocsp/{encoded:path}",
    summary="OCSP over GET (the request DER, base64, in the path)",
    responses={200: {"content": {"application/ocsp-response": {}}}},
)
def ocsp_get(encoded: str, request: Request) -> Response:
    try:
        body = base64.b64decode(encoded.replace("%2B", "+").replace("%2F", "/"), validate=True)
    except (binascii.Error, ValueError):
        body = b""
    return _answer(request, body)


def _answer(request: Request, body: bytes) -> Response:
    data = service_of(request).ocsp_response(body if len(body) <= _MAX_OCSP else b"")
    return Response(data, media_type="application/ocsp-response")


@router.get(
    "/crl/{name}.crl",
    summary="A deployment CA's current CRL (DER, public)",
    responses={200: {"content": {"application/pkix-crl": {}}}},
)
def crl(name: str, request: Request) -> Response:
    current = service_of(request).crl(DeploymentName(name))
    return Response(current.public_bytes(Encoding.DER), media_type="application/pkix-crl")
