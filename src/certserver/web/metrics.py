"""``/metrics`` in the Prometheus text format: certificates by state, seconds to the nearest
expiry per deployment, and requests by route and status (counted in this process)."""

from __future__ import annotations

import threading
from collections import Counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from certserver.clock import utc_now
from certserver.service import CertServer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RequestCounter:
    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()

    def add(self, path: str, method: str, status: str) -> None:
        with self._lock:
            self._counts[(path, method, status)] += 1

    def lines(self) -> list[str]:
        with self._lock:
            items = sorted(self._counts.items())
        out = [
            "# HELP certserver_http_requests_total Requests by route, method and status.",
            "# TYPE certserver_http_requests_total counter",
        ]
        out += [
            f'certserver_http_requests_total{{route="{_label(path)}",method="{method}",'
            f'status="{status}"}} {count}'
            for (path, method, status), count in items
        ]
        return out


class CountRequests:
    """ASGI middleware: every HTTP request counted by route, method and status (plain
    ASGI: Starlette's ``BaseHTTPMiddleware`` costs a task and a stream per request). A
    request whose handler raised counts as 500, the answer the server makes of it."""

    def __init__(self, app: ASGIApp, counter: RequestCounter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = "500"

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = getattr(scope.get("route"), "path", None) or "unmatched"
            self.counter.add(path, scope["method"], status)


def render(service: CertServer, counter: RequestCounter) -> str:
    now = utc_now()
    lines = [
        "# HELP certserver_certificates Certificates by state"
        " (pending: keys awaiting a signature).",
        "# TYPE certserver_certificates gauge",
    ]
    for state, count in sorted(service.certificate_counts().items()):
        lines.append(f'certserver_certificates{{state="{_label(state)}"}} {count}')
    lines += [
        "# HELP certserver_seconds_to_expiry Seconds until a deployment's first certificate"
        " expires.",
        "# TYPE certserver_seconds_to_expiry gauge",
    ]
    for summary in service.list_deployments():
        if summary.next_expiry is not None:
            seconds = (summary.next_expiry - now).total_seconds()
            lines.append(
                f'certserver_seconds_to_expiry{{deployment="{summary.name}"}} {seconds:.0f}'
            )
    lines += counter.lines()
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
