"""What every response and request of the service goes through: a body size limit (before
any route reads a byte, so no one makes the server hold a huge upload) and the security
headers (no framing, no sniffing, no caching of what may hold keys, HSTS over HTTPS)."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException

from certserver.asgi import ASGIApp, Message, Receive, Scope, Send

#: The largest request body: CSRs, certificate bundles and zips of them are far smaller.
MAX_BODY = 4 << 20

_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
    # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on forms
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
_HSTS = (b"strict-transport-security", b"max-age=31536000")


class _TooLarge(HTTPException):
    """Raised from ``receive`` once a body passes the limit: an HTTPException, so the route
    that was reading it answers 413 (FastAPI passes those through its body parsing)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over {limit} bytes")


class Guard:
    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next(
            (value for name, value in scope.get("headers", []) if name == b"content-length"),
            None,
        )
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await _too_large(send, self.max_body)
            return
        started = False
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge(self.max_body)
            return message

        async def with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [
                    (n, v) for n, v in message.get("headers", []) if n.lower() != b"cache-control"
                ]
                headers += _HEADERS
                if scope.get("scheme") == "https":
                    headers.append(_HSTS)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, counted, with_headers)
        except _TooLarge:
            if started:
                raise
            await _too_large(with_headers, self.max_body)


async def _too_large(send: Send, limit: int) -> None:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": "Content Too Large",
        "status": 413,
        "code": "too-large",
        "detail": f"the request body is over {limit} bytes",
    }
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
