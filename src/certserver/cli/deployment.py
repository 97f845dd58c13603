"""``certserver deployment …``: create, list, show, export."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import click

from certserver.cli import output
from certserver.clock import days_left, utc_now
from certserver.config import Settings
from certserver.errors import InvalidInput
from certserver.hosts import Host
from certserver.identity import Component, DeploymentName
from certserver.keys import KeySpec
from certserver.profiles import COMPONENT_VALIDITY_DAYS, DEFAULT_ORGANIZATION, Organization
from certserver.records import DeploymentView
from certserver.service import CertServer, CreateRequest

_KEY_TYPES = [spec.value for spec in KeySpec]


def _service() -> CertServer:
    return CertServer(Settings.from_env())


def _parse_host_option(value: str) -> tuple[str, list[Host]]:
    target, sep, names = value.partition("=")
    if not sep or not target.strip():
        raise InvalidInput(f"invalid --host {value!r}: expected COMPONENT=HOST[,HOST...]")
    if any(not name.strip() for name in names.split(",")):
        raise InvalidInput(f"invalid --host {value!r}: empty host name")
    return target, [Host.parse(name) for name in names.split(",")]


@click.group()
def deployment() -> None:
    """Create and look after deployments."""


@deployment.command("create")
@click.argument("name")
@click.option(
    "--org", default=DEFAULT_ORGANIZATION.value, show_default=True, help="Organization (O=)."
)
@click.option(
    "--host",
    "host_options",
    multiple=True,
    metavar="COMPONENT=HOST[,HOST...]",
    help="DNS names / IPs for a component's certificate; COMPONENT 'all' means every one.",
)
@click.option(
    "--key-type",
    type=click.Choice(_KEY_TYPES),
    default=KeySpec.EC_P256.value,
    show_default=True,
)
@click.option(
    "--validity-days",
    type=click.IntRange(min=1),
    default=COMPONENT_VALIDITY_DAYS,
    show_default=True,
    help="Validity of the component certificates.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path(),
    help="Directory for <name>_certs.zip (default: current directory).",
)
@click.option("--force", is_flag=True, help="Replace an existing zip at the target.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def create(
    name: str,
    org: str,
    host_options: tuple[str, ...],
    key_type: str,
    validity_days: int,
    out_dir: Path,
    force: bool,
    as_json: bool,
) -> None:
    """Make a deployment (CCID, CA, certificates) and its zip.

    Generates the CCID, the deployment's CA and a certificate and key for every component,
    records them in the store and writes <NAME>_certs.zip.
    """
    request = CreateRequest(
        name=DeploymentName(name),
        organization=Organization(org),
        hosts=merge_hosts(_parse_host_option(option) for option in host_options),
        key_spec=KeySpec.parse(key_type),
        validity_days=validity_days,
        out_dir=out_dir,
        force=force,
    )
    with _service() as service:
        result = service.create_deployment(request)
    path = result.package_path.resolve()
    if as_json:
        output.emit_json({"package": path, "deployment": result.deployment})
        return
    view = result.deployment
    click.echo(f"Created deployment {view.name}")
    click.echo(
        output.fields(
            [
                ("CCID", view.ccid.value),
                ("CA fingerprint", output.fingerprint(view.ca_fingerprint_sha256)),
                ("Package", str(path)),
            ]
        )
    )
    click.echo(_components_table(view))


@deployment.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(as_json: bool) -> None:
    """Every deployment in the store."""
    with _service() as service:
        summaries = service.list_deployments()
    if as_json:
        output.emit_json(list(summaries))
        return
    if not summaries:
        click.echo("No deployments.")
        return
    now = utc_now()
    rows = [
        [
            s.name.value,
            s.ccid.value,
            s.key_spec.value,
            output.when(s.created_at),
            output.when(s.next_expiry) if s.next_expiry else "-",
            str(days_left(s.next_expiry, now)) if s.next_expiry else "-",
        ]
        for s in summaries
    ]
    click.echo(output.table(["NAME", "CCID", "KEY", "CREATED", "NEXT EXPIRY", "DAYS LEFT"], rows))


@deployment.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(name: str, as_json: bool) -> None:
    """One deployment: identity, CA and every component certificate."""
    with _service() as service:
        view = service.show_deployment(DeploymentName(name))
    if as_json:
        output.emit_json(view)
        return
    click.echo(f"Deployment {view.name}")
    click.echo(
        output.fields(
            [
                ("CCID", view.ccid.value),
                ("Organization", view.organization),
                ("Key type", view.key_spec.value),
                ("Created", output.when(view.created_at)),
                ("Package version", str(view.package_version)),
                ("CA", view.ca_subject),
                ("CA fingerprint", output.fingerprint(view.ca_fingerprint_sha256)),
                ("CA not after", output.when(view.ca_not_after)),
            ]
        )
    )
    click.echo(_components_table(view))


@deployment.command("export")
@click.argument("name")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path(),
    help="Directory for <name>_certs.zip (default: current directory).",
)
@click.option("--force", is_flag=True, help="Replace an existing zip at the target.")
def export(name: str, out_dir: Path, force: bool) -> None:
    """Write <NAME>_certs.zip again from the store.

    The bytes are the same as when the deployment was created.
    """
    with _service() as service:
        path = service.export_package(DeploymentName(name), out_dir, force=force)
    click.echo(str(path.resolve()))


def _components_table(view: DeploymentView) -> str:
    now = utc_now()
    rows = [
        [
            c.component.folder,
            c.serial,
            output.when(c.not_after),
            str(days_left(c.not_after, now)),
            ", ".join(h.text for h in c.hosts) or "-",
        ]
        for c in view.components
    ]
    return "\n" + output.table(
        ["COMPONENT", "SERIAL", "NOT AFTER", "DAYS LEFT", "HOSTS"], rows, indent=2
    )


def merge_hosts(
    pairs: Iterable[tuple[str, Sequence[Host]]],
) -> dict[Component, tuple[Host, ...]]:
    """``--host`` values to hosts per component; ``all`` applies to every component."""
    merged: dict[Component, list[Host]] = {}
    for target, hosts in pairs:
        components = (
            list(Component) if target.strip().lower() == "all" else [Component.parse(target)]
        )
        for component in components:
            bucket = merged.setdefault(component, [])
            bucket.extend(host for host in hosts if host not in bucket)
    return {component: tuple(hosts) for component, hosts in merged.items()}
