"""Errors as ``application/problem+json`` (RFC 9457) with a stable ``code``.

A client's mistake is a 4xx; only the server's own trouble (its store, its master key) is a
5xx, and an unforeseen failure is a 500 without details.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from certserver.errors import CertserverError
from certserver.web.auth import audit_pending

PROBLEM = "application/problem+json"
log = logging.getLogger("certserver.web")

_STATUS = {
    "unauthenticated": 401,
    "forbidden": 403,
    "deployment-not-found": 404,
    "not-found": 404,
    "deployment-exists": 409,
    "target-exists": 409,
    "policy-refused": 422,
    "import-refused": 422,
    "invalid-input": 422,
    "file-problem": 422,
    "no-identity": 422,
    "store-error": 503,
    "store-missing": 503,
    "store-locked": 503,
    "store-corrupt": 503,
    "master-key": 503,
}
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def status_of(error: CertserverError) -> int:
    return _STATUS.get(error.code, 422 if error.code.endswith("-refused") else 400)


def problem(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": _TITLES.get(status, "Error"), "status": status}
    body.update(code=code, detail=detail, **extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(CertserverError)
    async def domain_error(request: Request, exc: CertserverError) -> JSONResponse:
        audit_pending(request, exc.code, exc.message)
        extra: dict[str, Any] = {}
        problems = getattr(exc, "problems", None)
        if isinstance(problems, list):
            extra["problems"] = problems
        return problem(status_of(exc), exc.code, exc.message, **extra)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        audit_pending(request, "invalid-request", "the request does not match the API")
        errors = [
            {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg"))}
            for error in exc.errors()
        ]
        return problem(422, "invalid-request", "the request does not match the API", errors=errors)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(
            exc.status_code, "http-error"
        )
        return problem(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s", type(exc).__name__)
        return problem(500, "internal-error", "an unexpected error; see the server's log")
