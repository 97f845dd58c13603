"""``certserver status | revoke | crl``: what expires when, and revocation."""

from __future__ import annotations

from pathlib import Path

import click

from certserver.accounts import parse_duration
from certserver.cli import output, restart
from certserver.config import Settings
from certserver.errors import InvalidInput
from certserver.identity import Component, DeploymentName
from certserver.revocation import Reason
from certserver.selfrenew import renew_here
from certserver.service import CertServer

#: ``status`` exit code when a certificate expires within the window (1 means an error).
EXIT_EXPIRING = 3


def _service() -> CertServer:
    return CertServer(Settings.from_env())


@click.command("status")
@click.argument("name", required=False)
@click.option("--within", default="30d", show_default=True, help="The window, e.g. 30d or 12h.")
@click.option("--json", "as_json", is_flag=True)
def status_command(name: str | None, within: str, as_json: bool) -> None:
    """Every certificate with its days left, by deployment.

    Exits 0 when none expires within the window, 3 when one does (or has), 1 on an error:
    made for cron and systemd timers.
    """
    window = parse_duration(within)
    with _service() as service:
        rows = service.status(DeploymentName(name) if name else None)
    limit = window.total_seconds() / 86400
    due = [row for row in rows if row.days_left < limit]
    if as_json:
        output.emit_json({"within_days": limit, "certificates": rows, "expiring": due})
    else:
        table = [
            [
                row.deployment.value,
                row.what,
                row.serial,
                "-" if row.state == "missing" else output.when(row.not_after),
                str(row.days_left),
                "MISSING" if row.state == "missing" else "EXPIRING" if row in due else "",
            ]
            for row in rows
        ]
        if table:
            click.echo(
                output.table(
                    ["DEPLOYMENT", "CERTIFICATE", "SERIAL", "NOT AFTER", "DAYS", ""], table
                )
            )
        click.echo(
            f"{len(due)} of {len(rows)} certificates expire within {within}"
            if due
            else f"Nothing expires within {within} ({len(rows)} certificates)."
        )
    if due:
        raise SystemExit(EXIT_EXPIRING)


@click.command("revoke")
@click.argument("name")
@click.option("--component", help="The component whose packaged certificate to revoke.")
@click.option("--serial", help="The serial (hex, as openssl prints it) of any of its certificates.")
@click.option(
    "--reason",
    type=click.Choice([reason.value for reason in Reason]),
    default=Reason.UNSPECIFIED.value,
    show_default=True,
)
def revoke_command(name: str, component: str | None, serial: str | None, reason: str) -> None:
    """Revoke a certificate; the deployment's CRL is made again at once."""
    with _service() as service:
        done = service.revoke(
            DeploymentName(name),
            component=Component.parse(component) if component else None,
            serial=serial,
            reason=Reason(reason),
        )
    click.echo(
        f"Revoked {done.serial} of {done.deployment} ({done.reason}); CRL #{done.crl_number}"
    )


@click.command("crl")
@click.argument("name")
@output.out_dir_option("<name>.crl (DER) and <name>.crl.pem")
@click.option("--force", is_flag=True, help="Replace existing CRL files.")
def crl_command(name: str, out_dir: Path, force: bool) -> None:
    """Write the deployment CA's CRL (made again when it nears its next update)."""
    with _service() as service:
        paths = service.export_crl(DeploymentName(name), out_dir, force=force)
    for path in paths:
        click.echo(str(path.resolve()))


@click.command("renew")
@click.argument("name", required=False)
@click.option(
    "--component",
    "components",
    multiple=True,
    help="Renew this component (repeatable; default: every one).",
)
@click.option("--rekey", is_flag=True, help="New keys too (else the same keys are certified).")
@output.out_dir_option("the new <name>_certs.zip")
@click.option("--force", is_flag=True, help="Replace an existing zip at the target.")
@click.option("--server", metavar="URL", help="Self-renewal: the certserver service to ask.")
@click.option(
    "--component-dir",
    type=click.Path(path_type=Path),
    help="Self-renewal: the installed component folder (its certificate is the credential).",
)
@click.option(
    "--server-ca", type=click.Path(path_type=Path), help="Self-renewal: trust for the service."
)
@click.option("--before", default="30d", show_default=True, help="Self-renewal: renew when due.")
@click.option(
    "--restart",
    "restarts",
    multiple=True,
    metavar="CMD",
    help="Self-renewal: run after renewing (repeatable; no shell).",
)
@click.pass_context
def renew_command(
    ctx: click.Context,
    name: str | None,
    components: tuple[str, ...],
    rekey: bool,
    out_dir: Path,
    force: bool,
    server: str | None,
    component_dir: Path | None,
    server_ca: Path | None,
    before: str,
    restarts: tuple[str, ...],
) -> None:
    """Certificates again with the same identities (new serials), a higher package version,
    and the new zip; `certserver install` takes it like any package.

    With --server and --component-dir (on a component's host, e.g. from a systemd timer):
    when the installed certificate expires within --before, a new key is made there, the
    service signs it over mutual TLS (the current certificate is the credential), the files
    are replaced atomically and the --restart commands run. Exit 0 also when not yet due.
    """
    if server is not None or component_dir is not None:
        if server is None or component_dir is None or name is not None:
            raise InvalidInput("self-renewal takes --server URL and --component-dir DIR, no NAME")
        planned = restart.commands(restarts)
        done = renew_here(server, component_dir, before=parse_duration(before), server_ca=server_ca)
        if not done.renewed:
            click.echo(f"Not due: {done.days_left} days left (renews within {before})")
            return
        click.echo(f"Renewed {component_dir}: {done.days_left} days left")
        restart.run(ctx, planned)
        return
    if name is None:
        raise InvalidInput("name the deployment to renew (or use --server for self-renewal)")
    with _service() as service:
        done_package = service.renew(
            DeploymentName(name),
            [Component.parse(c) for c in components],
            rekey=rekey,
            out_dir=out_dir,
            force=force,
        )
    renewed = ", ".join(c.folder for c in done_package.components)
    click.echo(
        f"Renewed {renewed} of {done_package.deployment} "
        f"(package version {done_package.package_version})"
    )
    if done_package.skipped:
        skipped = ", ".join(c.folder for c in done_package.skipped)
        click.echo(
            f"certserver: warning: not renewed, no current certificate (revoked?): {skipped}; "
            "bring one back with --rekey --component X",
            err=True,
        )
    if done_package.written_to is not None:
        click.echo(str(done_package.written_to.resolve()))


_ca_out = output.out_dir_option("the new <name>_certs.zip")


@click.group("ca")
def ca_group() -> None:
    """Rotate a deployment's CA without an outage."""


@ca_group.command("rotate")
@click.argument("name")
@_ca_out
@click.option("--force", is_flag=True, help="Replace an existing zip at the target.")
def ca_rotate(name: str, out_dir: Path, force: bool) -> None:
    """A new deployment CA: the new package trusts both; renew the components onto it."""
    with _service() as service:
        done = service.rotate_ca(DeploymentName(name), out_dir=out_dir, force=force)
    click.echo(f"Rotating the CA of {done.deployment} (package version {done.package_version})")
    click.echo(
        "Install the new package everywhere (it trusts both CAs), then `certserver renew "
        f"{name}` and install again, then `certserver ca finish-rotation {name}`."
    )
    if done.written_to is not None:
        click.echo(str(done.written_to.resolve()))


@ca_group.command("finish-rotation")
@click.argument("name")
@_ca_out
@click.option("--force", is_flag=True, help="Replace an existing zip at the target.")
def ca_finish(name: str, out_dir: Path, force: bool) -> None:
    """Stop trusting the old CA (its certificates must all have been renewed)."""
    with _service() as service:
        done = service.finish_rotation(DeploymentName(name), out_dir=out_dir, force=force)
    click.echo(
        f"The old CA of {done.deployment} is retired (package version {done.package_version})"
    )
    if done.written_to is not None:
        click.echo(str(done.written_to.resolve()))
