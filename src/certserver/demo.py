"""``certserver demo``: the product at work on one machine, in a few seconds.

A deployment's package is unpacked into a temporary folder; a CCM-like server listens on
loopback with CCM's credentials and default policy; CCO and GUA of the deployment call
it, then the broker (not allowed to call CCM) and the CCO of another deployment. Each
connection is shown with the identity the server verified, or why it was refused.
"""

from __future__ import annotations

import socket
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from certserver.archive import read_members
from certserver.config import Settings
from certserver.errors import PeerRefused, RefusalReason
from certserver.files import create_secret_file, ensure_private_dir
from certserver.hosts import Host
from certserver.identity import Component, DeploymentName, Identity
from certserver.mtls import ComponentCredentials, PeerCheck
from certserver.service import CertServer, CreateRequest

Echo = Callable[[str], None]
_HOSTS = (Host.parse("localhost"), Host.parse("127.0.0.1"))
_TIMEOUT = 15


@dataclass(frozen=True, slots=True)
class Caller:
    label: str
    credentials: ComponentCredentials
    #: What the server should make of it: accepted (None) or refused for this reason.
    expected: RefusalReason | None


@dataclass(frozen=True, slots=True)
class Outcome:
    caller: Caller
    accepted: Identity | None = None
    refused: PeerRefused | None = None
    server_seen: Identity | None = None
    tls_version: str | None = None

    @property
    def as_expected(self) -> bool:
        if self.caller.expected is None:
            return self.accepted is not None
        return self.refused is not None and self.refused.reason is self.caller.expected


def run_demo(echo: Echo, *, deployment: DeploymentName | None = None) -> bool:
    """Run the demo, writing its lines with ``echo``; True when every connection went as a
    deployment's certificates promise."""
    with tempfile.TemporaryDirectory(prefix="certserver-demo-") as workdir:
        work = Path(workdir)
        scratch = _scratch_settings(work / "home")
        if deployment is None:
            name = DeploymentName("demo")
            own = _create(scratch, name, work)
        else:
            name = deployment
            with CertServer(Settings.from_env()) as service:
                own = service.package_bytes(deployment)[1]
        other = _create(scratch, DeploymentName("elsewhere"), work)
        mine = _unpack(own, work / "own", f"the package of {name}")
        theirs = _unpack(other, work / "other", "the other package")
        return _show(echo, name, mine, theirs)


def _show(echo: Echo, name: DeploymentName, mine: Path, theirs: Path) -> bool:
    server = ComponentCredentials.from_folder(mine / Component.CCM.folder)
    check = server.peer_check()
    foreign = ComponentCredentials.from_folder(theirs / Component.CCO.folder)
    # the other deployment's CCO, given this deployment's public CA so that it gets as far
    # as the server's check
    foreign = ComponentCredentials(
        foreign.identity, foreign.cert_file, foreign.key_file, server.ca_file, None
    )
    callers = [
        Caller("cco of " + name.value, _creds(mine, Component.CCO), None),
        Caller("gua of " + name.value, _creds(mine, Component.GUA), None),
        Caller(
            "esb_rabbit of " + name.value,
            _creds(mine, Component.ESB_BROKER),
            RefusalReason.COMPONENT_NOT_ALLOWED,
        ),
        Caller("cco of elsewhere", foreign, RefusalReason.UNKNOWN_CA),
    ]
    allowed = ", ".join(sorted(c.folder for c in check.allowed))
    echo(f"certserver demo: deployment {name} (CCID {server.identity.ccid})")
    outcomes = _serve(server, check, callers, echo, allowed)
    width = max(len(o.caller.label) for o in outcomes)
    for outcome in outcomes:
        echo("  " + _line(outcome, width))
    if all(outcome.as_expected for outcome in outcomes):
        echo(
            "\nEvery connection went as the certificates promise: components of this "
            "deployment that CCM allows are in, with a verified identity; everyone else is "
            "refused, with the reason."
        )
        return True
    echo("\nUnexpected outcome: see the lines above.")
    return False


def _serve(
    server: ComponentCredentials,
    check: PeerCheck,
    callers: list[Caller],
    echo: Echo,
    allowed: str,
) -> list[Outcome]:
    context = server.server_context()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(_TIMEOUT)
    port = listener.getsockname()[1]
    echo(f"  a CCM-like server listens on 127.0.0.1:{port}; it accepts {allowed}\n")
    seen: list[tuple[Identity | None, PeerRefused | None, str | None]] = []

    def accept_all() -> None:
        with listener:
            for _ in callers:
                raw, _address = listener.accept()
                raw.settimeout(_TIMEOUT)
                try:
                    tls, identity = check.wrap(context, raw, server_side=True)
                except PeerRefused as refused:
                    seen.append((None, refused, None))
                    continue
                with tls:
                    seen.append((identity, None, tls.version()))
                    tls.sendall(b"welcome\n")

    thread = threading.Thread(target=accept_all, daemon=True)
    thread.start()
    client_views = [_call(caller.credentials, port) for caller in callers]
    thread.join(_TIMEOUT)
    return [
        Outcome(caller, accepted, refused, view, version)
        for caller, (accepted, refused, version), view in zip(
            callers, seen, client_views, strict=True
        )
    ]


def _call(client: ComponentCredentials, port: int) -> Identity | None:
    """Connect as ``client``; the server's identity as the client verified it."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=_TIMEOUT)
    try:
        # authenticated by its identity (SPIFFE style), whatever host names it has
        context = client.client_context(check_hostname=False)
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            server = client.peer_check(allowed={Component.CCM}).verify(tls)
            tls.recv(16)  # under TLS 1.3 a refusal of this client arrives here
            return server
    except (OSError, ssl.SSLError, PeerRefused):
        return None
    finally:
        raw.close()


def _line(outcome: Outcome, width: int) -> str:
    label = outcome.caller.label.ljust(width)
    if outcome.accepted is not None:
        seen = f"; it verified the server as {outcome.server_seen}" if outcome.server_seen else ""
        return f"{label}  accepted  {outcome.accepted} ({outcome.tls_version}{seen})"
    assert outcome.refused is not None
    return f"{label}  refused   {outcome.refused.reason}: {outcome.refused.message}"


def _creds(folder: Path, component: Component) -> ComponentCredentials:
    return ComponentCredentials.from_folder(folder / component.folder)


def _scratch_settings(home: Path) -> Settings:
    return Settings.from_env({"CERTSERVER_HOME": str(home)})


def _create(settings: Settings, name: DeploymentName, work: Path) -> bytes:
    with CertServer(settings) as service:
        request = CreateRequest(name=name, out_dir=work, hosts=dict.fromkeys(Component, _HOSTS))
        return service.create_deployment(request).path.read_bytes()


def _unpack(data: bytes, into: Path, source: str) -> Path:
    """A package's folders under ``into`` (keys 0600, folders 0700)."""
    for path, member in read_members(data, source).items():
        target = into / path
        ensure_private_dir(target.parent)
        create_secret_file(target, member.data)
    return into
