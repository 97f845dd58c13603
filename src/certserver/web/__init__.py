"""certserver as a service: the REST API, the web page and ``/metrics`` (FastAPI)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.responses import PlainTextResponse, RedirectResponse

from certserver.accounts import Role
from certserver.config import Settings
from certserver.service import CertServer
from certserver.web import api, metrics, pages, pki
from certserver.web.auth import Caller, require
from certserver.web.guard import Guard
from certserver.web.problems import install_handlers


def create_app(settings: Settings, *, service: CertServer | None = None) -> FastAPI:
    """The service over the store ``settings`` name (the same store as the CLI's)."""
    app = FastAPI(
        title="certserver",
        summary="Deployment certificate server: identities, CAs and component certificates",
        version="1",
        # the OpenAPI document is served; no documentation pages that load third-party
        # scripts on the service's own origin
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
    )
    app.add_middleware(Guard)
    app.state.service = service or CertServer(settings)
    counter = metrics.RequestCounter()
    app.add_middleware(metrics.CountRequests, counter=counter)
    install_handlers(app)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(pki.router)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=303)

    @app.get("/health", summary="Liveness (public)")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    def prometheus(caller: Annotated[Caller, Depends(require(Role.AUDITOR))]) -> PlainTextResponse:
        return PlainTextResponse(
            metrics.render(caller.service, counter), media_type=metrics.CONTENT_TYPE
        )

    return app
