"""``certserver deployment …``: create, list, show, export."""

from __future__ import annotations

from pathlib import Path

import click

from certserver.cli import output
from certserver.clock import days_left, utc_now
from certserver.config import Settings
from certserver.errors import InvalidInput
from certserver.files import read_regular_file
from certserver.hosts import Host, merge_hosts
from certserver.identity import DeploymentName
from certserver.keys import KeySpec
from certserver.profiles import (
    COMPONENT_VALIDITY_DAYS,
    DEFAULT_ORGANIZATION,
    CaMode,
    Organization,
)
from certserver.records import DeploymentView
from certserver.service import CertServer, CreateRequest, ImportResult, Supplied
from certserver.store import DeploymentState

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
@output.out_dir_option("<name>_certs.zip")
@click.option(
    "--ca",
    "ca_mode",
    type=click.Choice([mode.value for mode in CaMode]),
    default=CaMode.CERTSERVER.value,
    show_default=True,
    help="Who signs: certserver; an enterprise CA signing the deployment CA "
    "(writes <name>_ca.csr); or an enterprise CA signing each component (<name>_csrs.zip).",
)
@click.option("--force", is_flag=True, help="Replace an existing file at the target.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def create(
    name: str,
    org: str,
    host_options: tuple[str, ...],
    key_type: str,
    validity_days: int,
    out_dir: Path,
    ca_mode: str,
    force: bool,
    as_json: bool,
) -> None:
    """Make a deployment (CCID, CA, certificates) and its zip.

    Generates the CCID, the deployment's CA and a certificate and key for every component,
    records them in the store and writes <NAME>_certs.zip. With an enterprise CA (--ca) it
    writes the CSR(s) for it instead and records the deployment as pending, until
    `deployment import-ca` or `deployment import-signed` brings the signed certificates.
    """
    request = CreateRequest(
        name=DeploymentName(name),
        organization=Organization(org),
        hosts=merge_hosts(_parse_host_option(option) for option in host_options),
        key_spec=KeySpec.parse(key_type),
        validity_days=validity_days,
        out_dir=out_dir,
        force=force,
        ca_mode=CaMode(ca_mode),
    )
    with _service() as service:
        result = service.create_deployment(request)
    path = result.path.resolve()
    view = result.deployment
    if view.state is DeploymentState.PENDING:
        if as_json:
            output.emit_json({"csr": path, "deployment": view})
            return
        click.echo(f"Created deployment {view.name}, pending its enterprise CA")
        label = "CSR" if view.ca_mode is CaMode.ENTERPRISE_INTERMEDIATE else "CSRs"
        click.echo(output.fields([("CCID", view.ccid.value), (label, str(path))]))
        if view.ca_mode is CaMode.ENTERPRISE_INTERMEDIATE:
            then = f"import-ca {view.name} --cert SIGNED_CA --chain CHAIN"
        else:
            then = f"import-signed {view.name} SIGNED_FILE_OR_ZIP... --chain CHAIN"
        click.echo(
            f"\nHave the enterprise CA sign {path.name}, then run: certserver deployment {then}"
        )
        return
    if as_json:
        output.emit_json({"package": path, "deployment": view})
        return
    click.echo(f"Created deployment {view.name}")
    click.echo(
        output.fields(
            [
                ("CCID", view.ccid.value),
                *_issuer_fields(view)[1:2],
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
            s.ca_mode.value,
            s.state.value,
            output.when(s.created_at),
            output.when(s.next_expiry) if s.next_expiry else "-",
            str(days_left(s.next_expiry, now)) if s.next_expiry else "-",
        ]
        for s in summaries
    ]
    click.echo(
        output.table(
            ["NAME", "CCID", "KEY", "CA", "STATE", "CREATED", "NEXT EXPIRY", "DAYS LEFT"], rows
        )
    )


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
                ("Signed by", view.ca_mode.value),
                ("State", view.state.value),
                *_issuer_fields(view),
            ]
        )
    )
    if view.pending:
        pending = ", ".join("deployment CA" if c is None else c.folder for c in view.pending)
        click.echo(f"\nWaiting for the enterprise CA to sign: {pending}")
    if view.components:
        click.echo(_components_table(view))


def _issuer_fields(view: DeploymentView) -> list[tuple[str, str]]:
    if view.ca_subject is None or view.ca_fingerprint_sha256 is None:
        return []
    fields = [
        ("CA", view.ca_subject),
        ("CA fingerprint", output.fingerprint(view.ca_fingerprint_sha256)),
    ]
    if view.ca_not_after is not None:
        fields.append(("CA not after", output.when(view.ca_not_after)))
    return fields


@deployment.command("export")
@click.argument("name")
@output.out_dir_option("<name>_certs.zip")
@click.option("--force", is_flag=True, help="Replace an existing zip at the target.")
def export(name: str, out_dir: Path, force: bool) -> None:
    """Write <NAME>_certs.zip again from the store.

    The bytes are the same as when the deployment was created.
    """
    with _service() as service:
        path = service.export_package(DeploymentName(name), out_dir, force=force)
    click.echo(str(path.resolve()))


_MAX_INPUT = 8 << 20
_out_option = output.out_dir_option("<name>_certs.zip")
_chain_option = click.option(
    "--chain",
    "chain_file",
    type=click.Path(path_type=Path),
    required=True,
    help="The enterprise's root CA certificate(s) and any intermediates, in any form.",
)


def _supplied(path: Path) -> Supplied:
    return Supplied(str(path), read_regular_file(path, _MAX_INPUT, "certificate file"))


@deployment.command("import-ca")
@click.argument("name")
@click.option(
    "--cert",
    "cert_file",
    type=click.Path(path_type=Path),
    required=True,
    help="The deployment CA certificate the enterprise CA signed from <name>_ca.csr.",
)
@_chain_option
@_out_option
@click.option("--force", is_flag=True, help="Replace an existing zip at the target.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def import_ca(
    name: str, cert_file: Path, chain_file: Path, out_dir: Path, force: bool, as_json: bool
) -> None:
    """Bring in the enterprise-signed deployment CA, then issue and package the components.

    Checks that the certificate is for the pending key, is a CA that may sign, chains to
    a root in --chain and is valid long enough (the component certificates are capped to
    it, with a warning).
    """
    with _service() as service:
        result = service.import_ca(
            DeploymentName(name),
            _supplied(cert_file),
            _supplied(chain_file),
            out_dir,
            force=force,
        )
    _print_import(result, as_json)


@deployment.command("import-signed")
@click.argument("name")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@_chain_option
@_out_option
@click.option(
    "--partial",
    is_flag=True,
    help="Import the good certificates and leave the others pending (default: all or none).",
)
@click.option("--force", is_flag=True, help="Replace an existing zip at the target.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def import_signed(
    name: str,
    files: tuple[Path, ...],
    chain_file: Path,
    out_dir: Path,
    partial: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Bring in the component certificates an enterprise CA signed from <name>_csrs.zip.

    FILES are certificates in any order and common form (PEM, DER, PKCS#7) or zips of them.
    Each is matched to its component by public key and checked: the identity (URI SAN and
    OU), serverAuth + clientAuth, not a CA, chains to --chain. Every problem is listed and
    nothing is imported until all are right, unless --partial. When nothing is pending any
    more, <name>_certs.zip is written.
    """
    with _service() as service:
        result = service.import_signed(
            DeploymentName(name),
            [_supplied(path) for path in files],
            _supplied(chain_file),
            out_dir,
            partial=partial,
            force=force,
        )
    _print_import(result, as_json)


def _print_import(result: ImportResult, as_json: bool) -> None:
    path = result.package_path.resolve() if result.package_path else None
    if as_json:
        output.emit_json(
            {
                "package": path,
                "imported": ["ca" if c is None else c.folder for c in result.imported],
                "warnings": list(result.warnings),
                "problems": list(result.problems),
                "deployment": result.deployment,
            }
        )
        return
    for warning in result.warnings:
        click.echo(f"certserver: warning: {output.printable(warning)}", err=True)
    for problem in result.problems:
        click.echo(f"certserver: left pending: {output.printable(problem)}", err=True)
    view = result.deployment
    imported = ", ".join("deployment CA" if c is None else c.folder for c in result.imported)
    click.echo(f"Imported into deployment {view.name}: {imported}")
    if path is not None:
        click.echo(output.fields([("Package", str(path))]))
        click.echo(_components_table(view))
    else:
        pending = ", ".join("deployment CA" if c is None else c.folder for c in view.pending)
        click.echo(f"Still pending: {pending} (the package is written once all are imported)")


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
