"""The ASGI middleware under a real uvicorn with TLS, called by a real TLS client (httpx)."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from certserver.asgi import (
    PeerIdentityMiddleware,
    Receive,
    Scope,
    Send,
    TrustedFrontEnd,
    uvicorn_config,
)
from certserver.identity import Component, Identity
from certserver.mtls import ComponentCredentials
from certserver.package import fingerprint
from certserver.pem import certificates_pem, parse

from .conftest import Extracted

CCM, CCO, GUA = Component.CCM, Component.CCO, Component.GUA


async def whoami(scope: Scope, receive: Receive, send: Send) -> None:
    """Tells the caller what the middleware put on the request."""
    if scope["type"] != "http":
        return
    peer = scope["state"]["peer"]
    headers = {name.decode(): value.decode() for name, value in scope["headers"]}
    body = json.dumps(
        {
            "peer": peer.spiffe_id if isinstance(peer, Identity) else None,
            "remote_user": scope["state"]["remote_user"],
            "x-remote-user": headers.get("x-remote-user"),
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


@contextmanager
def serving(app: object, credentials: ComponentCredentials) -> Iterator[int]:
    """uvicorn on a free loopback port, in a thread, stopped at the end."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn_config(app, credentials, port=port, log_level="warning", lifespan="off")  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        threading.Event().wait(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def get(client: ComponentCredentials, port: int, **headers: str) -> httpx.Response:
    with httpx.Client(verify=client.client_context(), timeout=15) as http:
        return http.get(f"https://127.0.0.1:{port}/whoami", headers=headers)


@pytest.fixture
def ccm(alpha: Extracted) -> ComponentCredentials:
    return ComponentCredentials.from_folder(alpha.folder(CCM))


def test_an_allowed_component_gets_through_with_its_identity(
    alpha: Extracted, ccm: ComponentCredentials
) -> None:
    app = PeerIdentityMiddleware(whoami, ccm.peer_check())
    with serving(app, ccm) as port:
        answer = get(ComponentCredentials.from_folder(alpha.folder(CCO)), port)
    assert answer.status_code == 200
    assert answer.json()["peer"] == Identity(alpha.result.deployment.ccid, CCO).spiffe_id


def test_a_component_the_policy_does_not_allow_gets_403_with_the_reason(
    alpha: Extracted, ccm: ComponentCredentials
) -> None:
    app = PeerIdentityMiddleware(whoami, ccm.peer_check(allowed={GUA}))
    with serving(app, ccm) as port:
        answer = get(ComponentCredentials.from_folder(alpha.folder(CCO)), port)
        allowed = get(ComponentCredentials.from_folder(alpha.folder(GUA)), port)
    assert answer.status_code == 403
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["reason"] == "component-not-allowed"
    assert allowed.status_code == 200


def test_a_peer_of_another_deployment_that_passes_the_handshake_gets_403(
    alpha: Extracted, bravo: Extracted, tmp_path: Path
) -> None:
    # a server that trusts both deployments' CAs: the handshake passes, the CCID does not
    both = tmp_path / "both.crt"
    both.write_bytes(alpha.ca(CCM).read_bytes() + bravo.ca(CCM).read_bytes())
    ccm = ComponentCredentials.from_folder(alpha.folder(CCM))
    server = ComponentCredentials(
        ccm.identity, ccm.cert_file, ccm.key_file, both, None, ccm.issuer_key_id
    )
    foreign = ComponentCredentials.from_folder(bravo.folder(CCO))
    foreign = ComponentCredentials(
        foreign.identity, foreign.cert_file, foreign.key_file, both, None
    )
    app = PeerIdentityMiddleware(whoami, server.peer_check())
    with serving(app, server) as port:
        answer = get(foreign, port)
    assert answer.status_code == 403
    assert answer.json()["reason"] == "other-deployment"


def test_a_client_without_certificate_fails_the_handshake(
    alpha: Extracted, ccm: ComponentCredentials
) -> None:
    import ssl

    context = ssl.create_default_context(cafile=str(alpha.ca(CCM)))
    app = PeerIdentityMiddleware(whoami, ccm.peer_check())
    with (
        serving(app, ccm) as port,
        httpx.Client(verify=context, timeout=15) as http,
        pytest.raises(httpx.HTTPError),
    ):
        http.get(f"https://127.0.0.1:{port}/whoami")


def test_the_user_header_is_believed_from_the_front_end_only(
    alpha: Extracted, ccm: ComponentCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    ccid = alpha.result.deployment.ccid
    front = TrustedFrontEnd(identity=Identity(ccid, GUA))
    app = PeerIdentityMiddleware(whoami, ccm.peer_check(), front_ends=[front])
    caplog.set_level(logging.WARNING, logger="certserver.asgi")
    with serving(app, ccm) as port:
        believed = get(
            ComponentCredentials.from_folder(alpha.folder(GUA)), port, **{"X-Remote-User": "alice"}
        )
        stripped = get(
            ComponentCredentials.from_folder(alpha.folder(CCO)),
            port,
            **{"X-Remote-User": "mallory"},
        )
    assert believed.status_code == 200
    assert believed.json()["remote_user"] == "alice"
    assert stripped.status_code == 200
    assert stripped.json()["remote_user"] is None
    assert stripped.json()["x-remote-user"] is None  # the app never sees it
    assert any(
        "stripped x-remote-user" in r.getMessage() and "/cco" in r.getMessage()
        for r in caplog.records
    )
    assert not any("alice" in r.getMessage() for r in caplog.records)


def test_a_front_end_known_by_fingerprint(alpha: Extracted, ccm: ComponentCredentials) -> None:
    gua = ComponentCredentials.from_folder(alpha.folder(GUA))
    print_ = fingerprint(parse(gua.cert_file.read_bytes()).certificates[0])
    app = PeerIdentityMiddleware(
        whoami,
        ccm.peer_check(allowed={CCO}),
        front_ends=[TrustedFrontEnd(fingerprint_sha256=print_)],
    )
    with serving(app, ccm) as port:
        front = get(gua, port, **{"X-Remote-User": "bob"})
        other = get(
            ComponentCredentials.from_folder(alpha.folder(CCO)), port, **{"X-Remote-User": "eve"}
        )
    assert front.status_code == 200 and front.json()["remote_user"] == "bob"
    assert other.status_code == 200 and other.json()["remote_user"] is None


def test_the_example_service_runs(alpha: Extracted) -> None:
    """examples/ccm_service.py: the CCM-like service built on the middleware."""
    import importlib.util

    path = Path(__file__).parents[1] / "examples" / "ccm_service.py"
    spec = importlib.util.spec_from_file_location("ccm_service", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ccm = ComponentCredentials.from_folder(alpha.folder(CCM))
    with (
        serving(module.build_app(ccm), ccm) as port,
        httpx.Client(
            verify=ComponentCredentials.from_folder(alpha.folder(CCO)).client_context(), timeout=15
        ) as http,
    ):
        answer = http.get(f"https://127.0.0.1:{port}/api/whoami")
    assert answer.status_code == 200
    assert answer.json()["component"] == "cco"


def _forged(
    alpha: Extracted, tmp_path: Path, component: Component
) -> tuple[ComponentCredentials, Path]:
    """A certificate claiming alpha's identity, minted by another CA that the server also
    trusts (as a linked deployment's or a shared root's CA would be): (client, both CAs)."""
    import datetime as dt

    from certserver.authority import CertificateAuthority
    from certserver.identity import Ccid, DeploymentName
    from certserver.keys import KeySpec
    from certserver.profiles import DEFAULT_ORGANIZATION

    from .conftest import LOOPBACK_HOSTS
    from .tls_tools import write_folder

    now = dt.datetime.now(dt.UTC)
    other = CertificateAuthority.create(
        DeploymentName("other"), Ccid.generate(), DEFAULT_ORGANIZATION, KeySpec.EC_P256, now
    )
    key = KeySpec.EC_P256.generate()
    cert = other.issue(
        Identity(alpha.result.deployment.ccid, component), key.public_key(), KeySpec.EC_P256,
        DEFAULT_ORGANIZATION, LOOPBACK_HOSTS, now, 2,
    )  # fmt: skip
    both = tmp_path / "both.crt"
    both.write_bytes(alpha.ca(CCM).read_bytes() + certificates_pem([other.certificate]))
    folder = write_folder(tmp_path / "forged" / component.folder, component, cert, key, [])
    forged = ComponentCredentials.from_folder(folder)
    return ComponentCredentials(
        forged.identity, forged.cert_file, forged.key_file, both, None
    ), both


def test_a_front_end_identity_minted_by_another_trusted_ca_is_not_believed(
    alpha: Extracted, tmp_path: Path
) -> None:
    forged, both = _forged(alpha, tmp_path, GUA)
    ccm = ComponentCredentials.from_folder(alpha.folder(CCM))
    server = ComponentCredentials(
        ccm.identity, ccm.cert_file, ccm.key_file, both, None, ccm.issuer_key_id
    )
    front = TrustedFrontEnd(identity=Identity(alpha.result.deployment.ccid, GUA))
    app = PeerIdentityMiddleware(whoami, server.peer_check(), front_ends=[front])
    with serving(app, server) as port:
        answer = get(forged, port, **{"X-Remote-User": "admin"})
        real = get(
            ComponentCredentials.from_folder(alpha.folder(GUA)), port, **{"X-Remote-User": "alice"}
        )
    assert answer.status_code == 403
    assert answer.json()["reason"] == "other-deployment"
    assert real.status_code == 200 and real.json()["remote_user"] == "alice"


def test_spelling_tricks_do_not_pass_the_user_header(
    alpha: Extracted, ccm: ComponentCredentials
) -> None:
    front = TrustedFrontEnd(identity=Identity(alpha.result.deployment.ccid, GUA))
    app = PeerIdentityMiddleware(whoami, ccm.peer_check(), front_ends=[front])
    cco = ComponentCredentials.from_folder(alpha.folder(CCO))
    gua = ComponentCredentials.from_folder(alpha.folder(GUA))
    with serving(app, ccm) as port, httpx.Client(verify=cco.client_context(), timeout=15) as http:
        underscore = http.get(f"https://127.0.0.1:{port}/", headers=[("X_Remote_User", "admin")])
        upper = http.get(f"https://127.0.0.1:{port}/", headers=[("X-REMOTE-USER", "admin")])
        with httpx.Client(verify=gua.client_context(), timeout=15) as front_http:
            twice = front_http.get(
                f"https://127.0.0.1:{port}/",
                headers=[("X-Remote-User", "alice"), ("x-remote-user", "admin")],
            )
    for answer in (underscore, upper):
        assert answer.status_code == 200
        assert answer.json()["remote_user"] is None and answer.json()["x-remote-user"] is None
    assert twice.json()["remote_user"] is None and twice.json()["x-remote-user"] is None


async def ws_whoami(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    peer = scope["state"]["peer"]
    await send({"type": "websocket.send", "text": peer.spiffe_id})
    await send({"type": "websocket.close", "code": 1000})


def test_websockets_carry_the_identity_too(alpha: Extracted, ccm: ComponentCredentials) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    app = PeerIdentityMiddleware(ws_whoami, ccm.peer_check(allowed={CCO}))
    with serving(app, ccm) as port:
        cco = ComponentCredentials.from_folder(alpha.folder(CCO))
        with connect(f"wss://127.0.0.1:{port}/ws", ssl=cco.client_context(), open_timeout=15) as ws:
            assert ws.recv(timeout=15) == Identity(alpha.result.deployment.ccid, CCO).spiffe_id
        gua = ComponentCredentials.from_folder(alpha.folder(GUA))
        with (
            pytest.raises(InvalidStatus),
            connect(f"wss://127.0.0.1:{port}/ws", ssl=gua.client_context(), open_timeout=15),
        ):
            pass
