"""``certserver link …``: federation between deployments."""

from __future__ import annotations

from pathlib import Path

import click

from certserver.cli import output
from certserver.config import Settings
from certserver.errors import InvalidInput
from certserver.federation import TrustBundle
from certserver.files import read_regular_file
from certserver.identity import Component, DeploymentName
from certserver.records import DeploymentView
from certserver.service import CertServer

_MAX_BUNDLE = 1 << 20


def _service() -> CertServer:
    return CertServer(Settings.from_env())


@click.group()
def link() -> None:
    """Let components of one deployment accept another deployment's identities."""


@link.command("export")
@click.argument("name")
@output.out_dir_option("the bundle files")
@click.option("--force", is_flag=True, help="Replace existing bundle files.")
def export(name: str, out_dir: Path, force: bool) -> None:
    """Write NAME's trust bundle: <NAME>_bundle.json (SPIFFE) and <NAME>_bundle.pem.

    They hold the deployment's trust anchors, its CCID and the key identifiers of the CAs
    that issue its certificates: public data, for `link add` on the other deployment.
    """
    with _service() as service:
        paths = service.export_bundle(DeploymentName(name), out_dir, force=force)
    for path in paths:
        click.echo(str(path.resolve()))


@link.command("add")
@click.argument("name")
@click.option(
    "--bundle",
    "bundle_file",
    type=click.Path(path_type=Path),
    required=True,
    help="The linked deployment's trust bundle (from `link export`, JSON or PEM).",
)
@click.option(
    "--components",
    required=True,
    metavar="COMPONENT[,COMPONENT...]",
    help="Which of NAME's components accept the linked deployment (e.g. ccm).",
)
def add(name: str, bundle_file: Path, components: str) -> None:
    """Record that some of NAME's components accept a linked deployment's identities.

    The next package of NAME (`deployment export`) carries the linked anchors in those
    components' ca.crt and the linked CCID in their links.json.
    """
    if any(not part.strip() for part in components.split(",")):
        raise InvalidInput(f"invalid --components {components!r}: empty component name")
    wanted = list(dict.fromkeys(Component.parse(part) for part in components.split(",")))
    data = read_regular_file(bundle_file, _MAX_BUNDLE, "a trust bundle")
    bundle = TrustBundle.read(data, str(bundle_file))
    with _service() as service:
        view, replaced = service.add_link(DeploymentName(name), bundle, wanted)
    verb = "Updated" if replaced else "Added"
    click.echo(
        f"{verb} link: {', '.join(c.folder for c in wanted)} of {view.name} accept "
        f"deployment {bundle.name} ({bundle.ccid})"
    )
    click.echo(f"Package version is now {view.package_version}: export the package again.")


@link.command("remove")
@click.argument("name")
@click.argument("linked")
def remove(name: str, linked: str) -> None:
    """Undo `link add`: NAME stops accepting LINKED (a deployment name or CCID)."""
    with _service() as service:
        view = service.remove_link(DeploymentName(name), linked)
    click.echo(f"Removed the link of {view.name} to {linked}")
    click.echo(f"Package version is now {view.package_version}: export the package again.")


@link.command("list")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(name: str, as_json: bool) -> None:
    """The deployments NAME's components accept."""
    with _service() as service:
        view = service.show_deployment(DeploymentName(name))
    if as_json:
        output.emit_json(list(view.links))
        return
    _print_links(view)


def _print_links(view: DeploymentView) -> None:
    if not view.links:
        click.echo(f"Deployment {view.name} has no links.")
        return
    rows = [
        [
            link.deployment.value,
            link.ccid.value,
            ",".join(c.folder for c in link.components),
            output.when(link.created_at),
        ]
        for link in view.links
    ]
    click.echo(output.table(["DEPLOYMENT", "CCID", "ACCEPTED BY", "LINKED"], rows))
