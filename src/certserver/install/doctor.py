"""``doctor``: what is wrong with an installed component, one finding per check."""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import stat
from pathlib import Path

from certserver.errors import CertserverError
from certserver.federation import linked_anchors
from certserver.identity import Ccid, Component
from certserver.install.apply import interrupted
from certserver.install.owners import Owner, owner_for
from certserver.install.paths import HostPaths, link_points_to
from certserver.install.plan import DIR_MODE, installed_set
from certserver.mtls import ComponentCredentials
from certserver.package import fingerprint
from certserver.pem import ParseError, parse
from certserver.verify import Finding, Status, check_set


def diagnose(
    component: Component,
    paths: HostPaths,
    *,
    now: dt.datetime,
    broker_owner: Owner | None,
    check_owners: bool,
    connect: tuple[str, int] | None = None,
) -> list[Finding]:
    findings: list[Finding] = []
    if interrupted(paths):
        findings.append(
            Finding(
                Status.FAIL,
                "install",
                "an install or rollback was interrupted; the next install or --rollback "
                "finishes or undoes it",
            )
        )
    ccid: Ccid | None = None
    for member in component.installed_with:
        folder = paths.folder(member)
        owner = owner_for(member, broker_owner, chown=True) if check_owners else None
        findings += _folder(member, folder, owner)
        try:
            files = installed_set(member, folder)
        except CertserverError as exc:
            findings.append(Finding(Status.FAIL, f"{member.folder} files", exc.message))
            continue
        found, identity = check_set(files, now, expect_ccid=ccid)
        findings += found
        findings += _links(member, folder)
        if ccid is None and identity is not None:
            ccid = identity.ccid
    if paths.tomcat_link is not None:
        findings.append(_link(paths.tomcat_link, paths.folder(component)))
    if connect is not None:
        findings.append(_connect(component, paths.folder(component), connect))
    return findings


def _links(component: Component, folder: Path) -> list[Finding]:
    """A linked component's links.json: readable, and every linked anchor in its ca.crt."""
    if component.links_file is None or not (folder / component.links_file).exists():
        return []
    check = f"{component.folder} links"
    try:
        credentials = ComponentCredentials.from_folder(folder, component)
        anchors = linked_anchors(folder / component.links_file)
        trusted = {fingerprint(c) for c in parse(credentials.ca_file.read_bytes()).certificates}
    except (CertserverError, ParseError, OSError) as exc:
        return [Finding(Status.FAIL, check, str(exc))]
    missing = sorted(anchors - trusted)
    if missing:
        return [Finding(Status.FAIL, check, f"{component.ca_file} lacks linked anchors")]
    names = ", ".join(str(ccid) for ccid in credentials.linked)
    return [Finding(Status.PASS, check, f"accepts linked deployments {names}")]


def _folder(component: Component, folder: Path, owner: Owner | None) -> list[Finding]:
    name = component.folder
    try:
        info = folder.lstat()
    except FileNotFoundError:
        return [Finding(Status.FAIL, f"{name} folder", f"{folder} does not exist")]
    except OSError as exc:
        return [Finding(Status.FAIL, f"{name} folder", f"{folder}: {exc.strerror}")]
    if not stat.S_ISDIR(info.st_mode):
        return [Finding(Status.FAIL, f"{name} folder", f"{folder} is not a directory")]
    findings = [_mode_owner(f"{name} folder", folder, info, DIR_MODE, owner, allowed=(DIR_MODE,))]
    try:
        extra = sorted(p.name for p in folder.iterdir() if p.name not in component.file_names)
    except OSError as exc:
        return [*findings, Finding(Status.FAIL, f"{name} folder", f"{folder}: {exc.strerror}")]
    if extra:
        findings.append(
            Finding(Status.FAIL, f"{name} stray files", f"{folder} also holds {', '.join(extra)}")
        )
    names = [component.cert_file, component.key_file, component.ca_file]
    for optional in (component.chain_file, component.links_file):
        if optional and (folder / optional).exists():
            names.append(optional)
    for file_name in names:
        path = folder / file_name
        try:
            file_info = path.lstat()
        except FileNotFoundError:
            findings.append(Finding(Status.FAIL, f"{name} {file_name}", f"{path} is missing"))
            continue
        except OSError as exc:
            findings.append(Finding(Status.FAIL, f"{name} {file_name}", f"{path}: {exc.strerror}"))
            continue
        if not stat.S_ISREG(file_info.st_mode):
            findings.append(Finding(Status.FAIL, f"{name} {file_name}", f"{path} is not a file"))
            continue
        is_key = file_name == component.key_file
        allowed = (0o600, 0o400) if is_key or component.is_broker else (0o600, 0o644, 0o400, 0o444)
        findings.append(_mode_owner(f"{name} {file_name}", path, file_info, 0o600, owner, allowed))
    return findings


def _mode_owner(
    check: str,
    path: Path,
    info: os.stat_result,
    wanted: int,
    owner: Owner | None,
    allowed: tuple[int, ...],
) -> Finding:
    mode = stat.S_IMODE(info.st_mode)
    uid, gid = info.st_uid, info.st_gid
    if mode not in allowed:
        return Finding(Status.FAIL, check, f"{path} has mode {mode:04o}, expected {wanted:04o}")
    if owner is not None and (uid, gid) != (owner.uid, owner.gid):
        return Finding(Status.FAIL, check, f"{path} is owned by {uid}:{gid}, expected {owner}")
    shown = f", {owner}" if owner is not None else ""
    return Finding(Status.PASS, check, f"{path} mode {mode:04o}{shown}")


def _link(link: Path, folder: Path) -> Finding:
    if link_points_to(link, folder):
        return Finding(Status.PASS, "tomcat link", f"{link} -> {folder}")
    if not link.is_symlink():
        problem = "is a real folder or file, not a link" if link.exists() else "is missing"
        return Finding(Status.FAIL, "tomcat link", f"{link} {problem}")
    return Finding(
        Status.FAIL, "tomcat link", f"{link} points to {link.readlink()}, not to {folder}"
    )


def _connect(component: Component, folder: Path, address: tuple[str, int]) -> Finding:
    """A real mutual TLS handshake with the component's own files."""
    host, port = address
    check = f"connect {host}:{port}"
    try:
        credentials = ComponentCredentials.from_folder(folder, component)
        context = credentials.client_context(check_hostname=False)
        with (
            socket.create_connection(address, timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            peer = credentials.peer_check(allowed=set(Component)).verify(tls)
            version = tls.version()
    except CertserverError as exc:
        return Finding(Status.FAIL, check, exc.message)
    except ssl.SSLError as exc:
        return Finding(Status.FAIL, check, f"TLS handshake failed: {exc.reason or exc}")
    except (OSError, UnicodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return Finding(Status.FAIL, check, f"cannot connect: {reason}")
    return Finding(Status.PASS, check, f"mutual TLS ({version}) with {peer.spiffe_id}")
