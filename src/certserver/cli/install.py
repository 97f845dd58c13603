"""``certserver install`` and ``certserver doctor``: one component's files on its host."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from certserver.archive import open_package
from certserver.cli import output, restart
from certserver.clock import utc_now
from certserver.errors import InvalidInput
from certserver.files import read_regular_file
from certserver.identity import Component
from certserver.install.apply import apply, interrupted, locked, rollback
from certserver.install.doctor import diagnose
from certserver.install.owners import Owner, broker_owner, can_chown
from certserver.install.paths import RABBITMQ_CERTS, SSL_ROOT, TOMCAT_SSL_LINK, HostPaths
from certserver.install.plan import INSTALLABLE, InstallPlan, plan_install
from certserver.verify import Status

_MAX_PACKAGE = 16 << 20
_COMPONENTS = [c.folder for c in INSTALLABLE]


def _path_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options that say where a component's files live (DESIGN.md §3.4).

    The command receives them as ``component``, ``paths`` (a HostPaths) and ``owner``.
    """

    @functools.wraps(command)
    def with_paths(
        *args: Any,
        component_name: str,
        ssl_root: Path,
        tomcat_ssl_link: Path,
        no_tomcat_link: bool,
        rabbitmq_certs: Path,
        prefix: Path | None,
        **kwargs: Any,
    ) -> Any:
        paths = HostPaths.resolve(
            ssl_root=ssl_root,
            tomcat_link=None if no_tomcat_link else tomcat_ssl_link,
            rabbitmq_certs=rabbitmq_certs,
            prefix=prefix,
        )
        return command(*args, component=Component.parse(component_name), paths=paths, **kwargs)

    options = [
        click.option(
            "--component", "component_name", required=True, type=click.Choice(_COMPONENTS)
        ),
        click.option(
            "--ssl-root", type=click.Path(path_type=Path), default=SSL_ROOT, show_default=True
        ),
        click.option(
            "--tomcat-ssl-link",
            type=click.Path(path_type=Path),
            default=TOMCAT_SSL_LINK,
            show_default=True,
        ),
        click.option("--no-tomcat-link", is_flag=True, help="Do not create or check the link."),
        click.option(
            "--rabbitmq-certs",
            type=click.Path(path_type=Path),
            default=RABBITMQ_CERTS,
            show_default=True,
        ),
        click.option(
            "--prefix",
            type=click.Path(path_type=Path),
            help="Put every absolute path under this folder (tests, image builds).",
        ),
        click.option("--owner", help="Owner of the RabbitMQ files (default rabbitmq:rabbitmq)."),
    ]
    return functools.reduce(lambda cmd, option: option(cmd), reversed(options), with_paths)


def _broker_owner(component: Component, spec: str | None) -> Owner | None:
    if spec and component is not Component.ESB:
        _warn((f"--owner applies to the broker's files, which {component} does not have",))
    elif spec and not can_chown():
        _warn(("--owner needs root; owners are left as they are",))
    return broker_owner(spec) if component is Component.ESB and can_chown() else None


@click.command("install")
@click.argument("package", required=False, type=click.Path(path_type=Path))
@_path_options
@click.option("--rollback", "roll_back", is_flag=True, help="Bring back the previous set.")
@click.option(
    "--force",
    is_flag=True,
    help="Replace another deployment's set; move a folder at the link aside.",
)
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option(
    "--restart",
    "restarts",
    multiple=True,
    metavar="CMD",
    help="Run after a successful install (no shell; repeatable).",
)
@click.pass_context
def install_command(
    ctx: click.Context,
    package: Path | None,
    component: Component,
    paths: HostPaths,
    owner: str | None,
    roll_back: bool,
    force: bool,
    dry_run: bool,
    restarts: tuple[str, ...],
) -> None:
    """Install one component's files from PACKAGE (a <name>_certs.zip) on this host.

    Validates the whole package first, then swaps the new set in atomically and keeps the
    previous one for --rollback.
    """
    commands = restart.commands(restarts)
    if roll_back:
        if package is not None:
            raise InvalidInput("--rollback takes no package")
        outcome = rollback(component, paths, now=utc_now(), dry_run=dry_run)
    else:
        if package is None:
            raise InvalidInput("give the package to install (or --rollback)")
        opened = open_package(read_regular_file(package, _MAX_PACKAGE, "a package"), str(package))
        owners = _broker_owner(component, owner)

        def plan() -> InstallPlan:
            return plan_install(
                opened, component, paths, broker_owner=owners, now=utc_now(), force=force
            )

        first: InstallPlan | None = None
        if interrupted(paths):
            _warn(("an interrupted install or rollback is finished or undone first",))
        else:  # a refusal comes before anything is written, even the lock
            first = plan()
            _warn(first.warnings)
        if dry_run:
            shown = first or plan()
            click.echo(f"would install {component} of deployment {shown.ccid}:")
            for line in shown.describe():
                click.echo(output.printable(f"  {line}"))
            return
        with locked(paths):  # planned again: an interrupted install may just have been undone
            final = plan()
            if first is None:
                _warn(final.warnings)
            outcome = apply(final)
    for message in outcome.messages:
        click.echo(output.printable(message))
    if outcome.changed:
        restart.run(ctx, commands)


def _warn(warnings: tuple[str, ...]) -> None:
    for warning in warnings:
        click.echo(output.printable(f"certserver: warning: {warning}"), err=True)


@click.command("doctor")
@_path_options
@click.option("--connect", metavar="HOST:PORT", help="Also do a mutual TLS handshake there.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def doctor_command(
    ctx: click.Context,
    component: Component,
    paths: HostPaths,
    owner: str | None,
    connect: str | None,
    as_json: bool,
) -> None:
    """Check an installed component: files, owners, modes, key, chain, identity, expiry, link.

    Exits 0 only when no check FAILs.
    """
    findings = diagnose(
        component,
        paths,
        now=utc_now(),
        broker_owner=_broker_owner(component, owner),
        check_owners=can_chown(),
        connect=_address(connect) if connect else None,
    )
    if as_json:
        output.emit_json(
            [{"status": f.status.value, "check": f.check, "message": f.message} for f in findings]
        )
    else:
        for finding in findings:
            click.echo(output.printable(str(finding)))
    if any(f.status is Status.FAIL for f in findings):
        ctx.exit(1)


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"invalid --connect {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)
