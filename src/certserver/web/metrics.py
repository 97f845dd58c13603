"""``/metrics`` in the Prometheus text format: certificates by state, seconds to the nearest
expiry per deployment, and requests by route and status (counted in this process)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Awaitable, Callable

from fastapi import Request, Response

from certserver.clock import utc_now
from certserver.service import CertServer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RequestCounter:
    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        with self._lock:
            self._counts[(path, request.method, str(response.status_code))] += 1
        return response

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
