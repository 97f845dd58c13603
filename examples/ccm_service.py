"""A CCM-like service: only CCO, GUA, Monitor and ESB of this deployment may call it.

    python examples/ccm_service.py /usr/local/osmosix/ssl/ccm --port 8443

Every request carries the caller's verified identity; anything else gets 403.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from certserver.asgi import PeerIdentityMiddleware, Receive, Scope, Send, uvicorn_config
from certserver.mtls import ComponentCredentials


async def api(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    peer = scope["state"]["peer"]
    if scope["path"] == "/api/whoami":
        status, body = 200, {"ccid": peer.ccid.value, "component": peer.component.folder}
    else:
        status, body = 404, {"title": "Not Found", "status": 404}
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": data})


def build_app(credentials: ComponentCredentials) -> PeerIdentityMiddleware:
    """The service behind the identity check (the default policy for CCM)."""
    return PeerIdentityMiddleware(api, credentials.peer_check())


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the installed ccm folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    args = parser.parse_args()
    credentials = ComponentCredentials.from_folder(args.folder)
    uvicorn.Server(
        uvicorn_config(build_app(credentials), credentials, host=args.host, port=args.port)
    ).run()


if __name__ == "__main__":
    main()
