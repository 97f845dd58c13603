"""``certserver client-cert``: the management server's browser-facing certificate."""

from __future__ import annotations

import contextlib
import functools
import pwd
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from certserver.cli import output, restart
from certserver.clock import utc_now
from certserver.errors import InstallRefused, InvalidInput
from certserver.files import check_writable_dir, create_secret_file, read_passphrase
from certserver.hosts import Host
from certserver.install.fsops import write_file
from certserver.install.owners import Owner, can_chown
from certserver.keys import KeySpec, PrivateKey, to_pkcs8_pem
from certserver.pem import certificate_pem
from certserver.profiles import CLIENT_CERT_MAX_DAYS
from certserver.verify import Finding, Status
from certserver.webcert import install as installer
from certserver.webcert.check import check, system_anchors
from certserver.webcert.material import Ask, Material, load
from certserver.webcert.selfsigned import make_default
from certserver.webcert.transaction import Outcome

_PATH = click.Path(path_type=Path)


@click.group("client-cert")
def client_cert() -> None:
    """The management server's HTTPS certificate for browsers: default, check, install."""


def _hosts(values: tuple[str, ...]) -> list[Host]:
    return [Host.parse(part) for value in values for part in value.split(",") if part.strip()]


def _ask() -> Ask | None:
    """A passphrase prompt, only on a terminal (never when stdin is a pipe or a file)."""
    if sys.stdin is None or not sys.stdin.isatty():  # None: started with stdin closed
        return None
    return lambda what: click.prompt(
        f"passphrase for {what}", hide_input=True, err=True, default="", show_default=False
    ).encode()


def _input_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--key", type=_PATH, help="The private key (PEM or DER, any common form)."),
        click.option("--ca-bundle", type=_PATH, help="The CA bundle: intermediates, any order."),
        click.option("--key-passphrase-file", type=_PATH, help="First line: the key's passphrase."),
        click.option(
            "--p12-passphrase-file", type=_PATH, help="First line: the PKCS#12 file's passphrase."
        ),
    ]
    return functools.reduce(lambda cmd, option: option(cmd), reversed(options), command)


def _target_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Where to install (Tomcat or nginx) and how; the command gets ``target`` and ``owner``."""

    @functools.wraps(command)
    def with_target(
        *args: Any,
        tomcat_home: Path | None,
        nginx_dir: Path | None,
        connector_port: int | None,
        ssl_dir: Path | None,
        owner: str | None,
        p12: bool,
        p12_password_file: Path | None,
        **kwargs: Any,
    ) -> Any:
        target = _target(tomcat_home, nginx_dir, connector_port, ssl_dir, p12, p12_password_file)
        return command(*args, target=target, owner=_owner(owner), **kwargs)

    options = [
        click.option("--tomcat-home", type=_PATH, help="Tomcat's base: conf/server.xml, conf/ssl."),
        click.option("--nginx-dir", type=_PATH, help="Write public.crt and public.key here."),
        click.option(
            "--connector-port",
            type=click.IntRange(1, 65535),
            help="The HTTPS connector to change (needed when server.xml has several).",
        ),
        click.option("--ssl-dir", type=_PATH, help="Tomcat: the files' folder (conf/ssl)."),
        click.option("--owner", metavar="USER[:GROUP]", help="Owner of the installed files."),
        click.option("--p12", is_flag=True, help="Tomcat: a PKCS#12 keystore and a truststore."),
        click.option(
            "--p12-password-file", type=_PATH, help="The stores' password (else one is made)."
        ),
        click.option(
            "--restart",
            "restarts",
            multiple=True,
            metavar="CMD",
            help="Run after a successful install (no shell; repeatable).",
        ),
    ]
    return functools.reduce(lambda cmd, option: option(cmd), reversed(options), with_target)


def _target(
    tomcat_home: Path | None,
    nginx_dir: Path | None,
    port: int | None,
    ssl_dir: Path | None,
    p12: bool,
    p12_password_file: Path | None,
) -> installer.Target | None:
    if tomcat_home is not None and nginx_dir is not None:
        raise InvalidInput("give --tomcat-home or --nginx-dir, not both")
    if nginx_dir is not None:
        extra = [
            name
            for name, given in (
                ("--connector-port", port is not None),
                ("--ssl-dir", ssl_dir is not None),
                ("--p12", p12 or p12_password_file is not None),
            )
            if given
        ]
        if extra:
            raise InvalidInput(f"{', '.join(extra)}: only for Tomcat (--tomcat-home)")
        return installer.NginxTarget(nginx_dir.absolute())
    if tomcat_home is None:
        if port is not None or ssl_dir is not None or p12 or p12_password_file is not None:
            raise InvalidInput("--connector-port, --ssl-dir and --p12 need --tomcat-home")
        return None
    if p12_password_file is not None and not p12:
        raise InvalidInput("--p12-password-file needs --p12")
    password = None
    if p12_password_file is not None:
        password = installer.password_text(read_passphrase(p12_password_file), p12_password_file)
    return installer.TomcatTarget(
        tomcat_home.absolute(),
        ssl_dir.absolute() if ssl_dir is not None else None,
        str(port) if port is not None else None,
        p12,
        password,
    )


def _owner(spec: str | None) -> Owner | None:
    if spec is None:
        return None
    if not can_chown():
        raise InvalidInput("--owner needs root")
    return Owner.parse(spec)


def _print(findings: tuple[Finding, ...], as_json: bool) -> None:
    if as_json:
        output.emit_json(
            {
                "ok": not any(f.status is Status.FAIL for f in findings),
                "findings": [
                    {"status": f.status.value, "check": f.check, "message": f.message}
                    for f in findings
                ],
            }
        )
        return
    for finding in findings:
        click.echo(output.printable(str(finding)))


@client_cert.command("check")
@click.option("--cert", type=_PATH, required=True, help="The certificate (PEM, DER, PKCS#7/12).")
@_input_options
@click.option("--host", "hosts", multiple=True, metavar="NAME[,NAME…]", help="Must be in SANs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def check_command(
    ctx: click.Context,
    cert: Path,
    key: Path | None,
    ca_bundle: Path | None,
    key_passphrase_file: Path | None,
    p12_passphrase_file: Path | None,
    hosts: tuple[str, ...],
    as_json: bool,
) -> None:
    """Report everything wrong with a certificate, key and bundle, a line each.

    Exits 0 only when nothing FAILs.
    """
    names = _hosts(hosts)
    material = load(
        cert,
        key,
        ca_bundle,
        key_passphrase_file=key_passphrase_file,
        p12_passphrase_file=p12_passphrase_file,
        ask=_ask(),
    )
    report = check(material, utc_now(), hosts=names, system_anchors=system_anchors())
    _print(report.findings, as_json)
    if not report.ok:
        ctx.exit(1)


@client_cert.command("install")
@click.option("--cert", type=_PATH, help="The certificate (PEM, DER, PKCS#7/12).")
@_input_options
@click.option("--host", "hosts", multiple=True, metavar="NAME[,NAME…]", help="Must be in SANs.")
@_target_options
@click.option("--rollback", "roll_back", is_flag=True, help="Bring back the previous files.")
@click.pass_context
def install_command(
    ctx: click.Context,
    cert: Path | None,
    key: Path | None,
    ca_bundle: Path | None,
    key_passphrase_file: Path | None,
    p12_passphrase_file: Path | None,
    hosts: tuple[str, ...],
    target: installer.Target | None,
    owner: Owner | None,
    restarts: tuple[str, ...],
    roll_back: bool,
) -> None:
    """Check the files, then wire them into Tomcat's server.xml or write them for nginx.

    Nothing is installed when the check FAILs. The previous files are kept for --rollback.
    """
    commands = restart.commands(restarts)
    if target is None:
        raise InvalidInput("give --tomcat-home DIR or --nginx-dir DIR")
    if roll_back:
        if cert is not None or key is not None or ca_bundle is not None:
            raise InvalidInput("--rollback takes no --cert, --key or --ca-bundle")
        with installer.locked(target) as recovered:
            _say(recovered)
            outcome = installer.rollback(target)
    else:
        if cert is None:
            raise InvalidInput("give --cert (or --rollback)")
        material = load(
            cert,
            key,
            ca_bundle,
            key_passphrase_file=key_passphrase_file,
            p12_passphrase_file=p12_passphrase_file,
            ask=_ask(),
        )
        outcome = _install(material, _hosts(hosts), target, owner)
    for message in outcome.messages:
        click.echo(output.printable(message))
    if outcome.changed:
        restart.run(ctx, commands)


def _install(
    material: Material, hosts: list[Host], target: installer.Target, owner: Owner | None
) -> Outcome:
    report = check(material, utc_now(), hosts=hosts, system_anchors=system_anchors())
    for finding in report.findings:
        if finding.status is Status.WARN:
            _warn(f"{finding.check}: {finding.message}")
    if not report.ok or material.key is None:
        raise InstallRefused(
            str(material.cert_path), [f"{f.check}: {f.message}" for f in report.failed]
        )
    if isinstance(target, installer.TomcatTarget) and owner is None and _user_exists("tomcat"):
        _warn(
            f"the key is readable by {Owner.current()} only; if Tomcat runs as user tomcat, "
            "give --owner tomcat"
        )
    with installer.locked(target) as recovered:
        _say(recovered)
        planned = installer.plan(report, material.key, target, owner)
        return installer.apply(planned)


def _say(messages: tuple[str, ...]) -> None:
    for message in messages:
        click.echo(output.printable(message))


def _warn(message: str) -> None:
    click.echo(output.printable(f"certserver: warning: {message}"), err=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@client_cert.command("default")
@click.option(
    "--host", "hosts", multiple=True, required=True, metavar="NAME[,NAME…]", help="SAN names."
)
@click.option("--out", type=_PATH, help="Write certificate.crt and certificate.key here.")
@click.option(
    "--key-type",
    default=KeySpec.EC_P256.value,
    show_default=True,
    type=click.Choice([spec.value for spec in KeySpec]),
)
@click.option(
    "--days",
    type=click.IntRange(1, CLIENT_CERT_MAX_DAYS),
    default=CLIENT_CERT_MAX_DAYS,
    show_default=True,
)
@click.option("--install", "do_install", is_flag=True, help="Also install it (as `install`).")
@_target_options
@click.pass_context
def default_command(
    ctx: click.Context,
    hosts: tuple[str, ...],
    out: Path | None,
    key_type: str,
    days: int,
    do_install: bool,
    target: installer.Target | None,
    owner: Owner | None,
    restarts: tuple[str, ...],
) -> None:
    """Make a fresh self-signed certificate for HOSTs (at most 397 days) and its key."""
    names = _hosts(hosts)
    commands = restart.commands(restarts)
    if do_install and target is None:
        raise InvalidInput("--install needs --tomcat-home DIR or --nginx-dir DIR")
    if not do_install and (target is not None or owner is not None or commands):
        raise InvalidInput("--tomcat-home, --nginx-dir, --owner and --restart need --install")
    if out is None and not do_install:
        out = Path.cwd()
    if out is not None:
        check_writable_dir(out)
    cert, key = make_default(names, utc_now(), spec=KeySpec.parse(key_type), days=days)
    if out is not None:
        _write_pair(out, cert_pem=certificate_pem(cert), key=key)
        click.echo(
            output.printable(f"wrote {out / installer.CERT_FILE} and {out / installer.KEY_FILE}")
        )
    if do_install:
        assert target is not None
        material = Material(
            cert_path=Path("(the new default certificate)"),
            certificates=(cert,),
            key=key,
            key_path=None,
            bundle_path=None,
        )
        outcome = _install(material, names, target, owner)
        for message in outcome.messages:
            click.echo(output.printable(message))
        if outcome.changed:
            restart.run(ctx, commands)


def _write_pair(out: Path, *, cert_pem: bytes, key: PrivateKey) -> None:
    key_path, cert_path = out / installer.KEY_FILE, out / installer.CERT_FILE
    if cert_path.exists():
        raise InvalidInput(f"{cert_path}: already exists")
    create_secret_file(key_path, to_pkcs8_pem(key))
    try:
        write_file(cert_path, cert_pem, 0o644, None)
    except BaseException:
        with contextlib.suppress(OSError):
            key_path.unlink()
        raise
