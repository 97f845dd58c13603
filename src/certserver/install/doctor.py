"""``doctor``: what is wrong with an installed component, one finding per check."""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import stat
from pathlib import Path

from certserver.errors import CertserverError
from certserver.identity import Ccid, Component
from certserver.install.owners import Owner
from certserver.install.paths import HostPaths
from certserver.install.plan import DIR_MODE, installed_set
from certserver.mtls import ComponentCredentials
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
    sets = [component, Component.ESB_BROKER] if component is Component.ESB else [component]
    ccid: Ccid | None = None
    for member in sets:
        folder = paths.folder(member)
        owner = broker_owner if member.is_broker and broker_owner else Owner.root()
        findings += _folder(member, folder, owner if check_owners else None)
        files = installed_set(member, folder)
        if files is None:
            findings.append(
                Finding(Status.FAIL, f"{member.folder} files", f"{folder} lacks a file of the set")
            )
            continue
        found, identity = check_set(files, now, expect_ccid=ccid)
        findings += found
        if ccid is None and identity is not None:
            ccid = identity.ccid
    if paths.tomcat_link is not None:
        findings.append(_link(paths.tomcat_link, paths.folder(component)))
    if connect is not None:
        findings.append(_connect(component, paths.folder(component), connect))
    return findings


def _folder(component: Component, folder: Path, owner: Owner | None) -> list[Finding]:
    name = component.folder
    try:
        info = folder.lstat()
    except FileNotFoundError:
        return [Finding(Status.FAIL, f"{name} folder", f"{folder} does not exist")]
    if not stat.S_ISDIR(info.st_mode):
        return [Finding(Status.FAIL, f"{name} folder", f"{folder} is not a directory")]
    findings = [_mode_owner(f"{name} folder", folder, info, DIR_MODE, owner, allowed=(DIR_MODE,))]
    names = [component.cert_file, component.key_file, component.ca_file]
    if component.chain_file and (folder / component.chain_file).exists():
        names.append(component.chain_file)
    for file_name in names:
        path = folder / file_name
        try:
            file_info = path.lstat()
        except FileNotFoundError:
            findings.append(Finding(Status.FAIL, f"{name} {file_name}", f"{path} is missing"))
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
    if not link.is_symlink():
        problem = "is a real folder, not a link" if link.exists() else "is missing"
        return Finding(Status.FAIL, "tomcat link", f"{link} {problem}")
    if link.resolve() != folder.resolve():
        return Finding(
            Status.FAIL, "tomcat link", f"{link} points to {link.readlink()}, not {folder}"
        )
    return Finding(Status.PASS, "tomcat link", f"{link} -> {folder}")


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
    except OSError as exc:
        return Finding(Status.FAIL, check, f"cannot connect: {exc.strerror or exc}")
    return Finding(Status.PASS, check, f"mutual TLS ({version}) with {peer.spiffe_id}")
