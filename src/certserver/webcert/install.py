"""``client-cert install``: a checked certificate into Tomcat (server.xml) or nginx.

The caller has run :func:`certserver.webcert.check.check`; this plans the files from its
report (the chain in order), writes them together (see :mod:`.transaction`), and undoes
the last install on ``rollback``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from certserver.errors import FileProblem, InvalidInput
from certserver.files import read_regular_file
from certserver.install.owners import Owner
from certserver.keys import PrivateKey, to_pkcs8_pem
from certserver.pem import certificate_pem, certificates_pem
from certserver.webcert import connector, keystore, tomcat, transaction
from certserver.webcert.check import Report
from certserver.webcert.transaction import (
    FileChange,
    Outcome,
    commit,
    current,
    drop_backup,
    saved_changes,
)

BACKUP = ".certserver-client-previous"
_MAX_SERVER_XML = 4 << 20

# Tomcat's files in conf/ssl: the names of the original procedure
CERT_FILE = "certificate.crt"
KEY_FILE = "certificate.key"
CHAIN_FILE = "cacertificate.crt"
KEYSTORE_FILE = "keystore.p12"
TRUSTSTORE_FILE = "truststore.p12"
PASSWORD_FILE = "keystore.password"  # noqa: S105 - a file name
_TOMCAT_FILES = (CERT_FILE, KEY_FILE, CHAIN_FILE, KEYSTORE_FILE, TRUSTSTORE_FILE, PASSWORD_FILE)
# nginx's
NGINX_CERT = "public.crt"
NGINX_KEY = "public.key"


@dataclass(frozen=True)
class TomcatTarget:
    home: Path
    ssl_dir: Path | None = None  # default: <home>/conf/ssl
    port: str | None = None
    #: PKCS#12 keystore instead of PEM files; the store password (None: generate one)
    p12: bool = False
    p12_password: str | None = None

    @property
    def server_xml(self) -> Path:
        return self.home / "conf" / "server.xml"

    @property
    def ssl(self) -> Path:
        return self.ssl_dir if self.ssl_dir is not None else self.home / "conf" / "ssl"

    @property
    def backup(self) -> Path:
        return self.home / "conf" / BACKUP


@dataclass(frozen=True)
class NginxTarget:
    folder: Path

    @property
    def backup(self) -> Path:
        return self.folder / BACKUP


def locked(
    target: TomcatTarget | NginxTarget,
) -> contextlib.AbstractContextManager[tuple[str, ...]]:
    """Hold for planning and applying: one install at a time, an interrupted one undone."""
    folder = target.home / "conf" if isinstance(target, TomcatTarget) else target.folder
    return transaction.locked(folder, target.backup)


Target = TomcatTarget | NginxTarget


@dataclass(frozen=True)
class Plan:
    changes: tuple[FileChange, ...]
    new_dirs: tuple[tuple[Path, int, tuple[int, int] | None], ...]
    backup: Path
    messages: tuple[str, ...]


def plan(report: Report, key: PrivateKey, target: Target, owner: Owner | None) -> Plan:
    ids = (owner.uid, owner.gid) if owner is not None else None
    if isinstance(target, NginxTarget):
        return _plan_nginx(report, key, target, ids)
    return _plan_tomcat(report, key, target, ids)


def _plan_nginx(
    report: Report, key: PrivateKey, target: NginxTarget, ids: tuple[int, int] | None
) -> Plan:
    folder = target.folder
    changes = (
        FileChange(folder / NGINX_CERT, certificates_pem([report.leaf, *report.chain]), 0o644, ids),
        FileChange(folder / NGINX_KEY, to_pkcs8_pem(key), 0o600, ids),
    )
    messages = (f"wrote {folder / NGINX_CERT} (leaf and chain) and {folder / NGINX_KEY}",)
    return Plan(changes, ((folder, 0o755, None),), target.backup, messages)


def _plan_tomcat(
    report: Report, key: PrivateKey, target: TomcatTarget, ids: tuple[int, int] | None
) -> Plan:
    ssl = target.ssl
    if ssl.is_symlink():
        raise FileProblem(
            ssl,
            f"is a link to {ssl.readlink()} (the component set, which each component install "
            "replaces whole): give --ssl-dir for the client certificate's files",
        )
    if ssl.exists() and not ssl.is_dir():
        raise FileProblem(ssl, "is not a directory")
    server_xml = target.server_xml
    original = read_regular_file(server_xml, _MAX_SERVER_XML, "a server.xml")
    info = server_xml.stat()
    key_type = "EC" if isinstance(key, ec.EllipticCurvePrivateKey) else "RSA"
    files: dict[str, tuple[bytes, int]] = {}
    pointer: connector.Target
    if target.p12:
        password = target.p12_password or keystore.new_password()
        secret = password.encode()
        files[KEYSTORE_FILE] = (
            keystore.keystore(key, report.leaf, report.chain, secret),
            0o600,
        )
        anchors = [*report.chain, *([report.anchor] if report.anchor is not None else [])]
        files[TRUSTSTORE_FILE] = (keystore.truststore(anchors, secret), 0o644)
        if target.p12_password is None:
            files[PASSWORD_FILE] = (secret + b"\n", 0o600)
        pointer = connector.KeystoreFile(
            (ssl / KEYSTORE_FILE).absolute(), password, keystore.KEY_ALIAS, key_type
        )
    else:
        files[CERT_FILE] = (certificate_pem(report.leaf), 0o644)
        files[KEY_FILE] = (to_pkcs8_pem(key), 0o600)
        if report.chain:
            files[CHAIN_FILE] = (certificates_pem(list(report.chain)), 0o644)
        pointer = connector.PemFiles(
            (ssl / CERT_FILE).absolute(),
            (ssl / KEY_FILE).absolute(),
            (ssl / CHAIN_FILE).absolute() if report.chain else None,
            key_type,
        )
    edited = tomcat.edit_server_xml(original, server_xml, pointer, target.port)
    changes = [
        FileChange(ssl / name, files[name][0], files[name][1], ids)
        if name in files
        else FileChange(ssl / name, None)
        for name in _TOMCAT_FILES
    ]
    changes.append(
        FileChange(server_xml, edited.data, info.st_mode & 0o7777, (info.st_uid, info.st_gid))
    )
    dir_owner = (0, ids[1]) if ids is not None and os.geteuid() == 0 else None
    messages = (
        f"wrote {', '.join(str(ssl / name) for name in files)}",
        f"{server_xml}: {edited.description}",
    )
    return Plan(
        tuple(changes), ((ssl, 0o750 if ids else 0o755, dir_owner),), target.backup, messages
    )


def apply(planned: Plan) -> Outcome:
    if all(current(change) for change in planned.changes):
        return Outcome(False, ("already installed: nothing changed",))
    commit(planned.changes, backup=planned.backup, new_dirs=planned.new_dirs)
    return Outcome(True, (*planned.messages, f"the previous files are kept in {planned.backup}"))


def rollback(target: Target) -> Outcome:
    """Bring back the files (and server.xml) as they were before the last install."""
    changes = saved_changes(target.backup)
    commit(changes, backup=None)
    drop_backup(target.backup)
    restored = [str(c.path) for c in changes if c.data is not None]
    removed = [str(c.path) for c in changes if c.data is None and not os.path.lexists(c.path)]
    messages = [f"restored {', '.join(restored)}"] if restored else []
    if removed:
        messages.append(f"removed {', '.join(removed)} (not there before)")
    return Outcome(True, tuple(messages))


def password_text(secret: bytes, source: Path) -> str:
    """A store password read from a file, as the text server.xml will hold."""
    try:
        return secret.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{source}: the password is not UTF-8 text") from None
