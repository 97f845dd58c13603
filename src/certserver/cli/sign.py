"""``certserver sign-csr``: the deployment's CA signs a component's CSR made on its host."""

from __future__ import annotations

from pathlib import Path

import click

from certserver.config import Settings
from certserver.files import StagedFile, read_regular_file
from certserver.identity import Component, DeploymentName
from certserver.pem import certificate_pem
from certserver.service import CertServer

_MAX_CSR = 64 << 10


@click.command("sign-csr")
@click.argument("name")
@click.argument("csr", type=click.Path(path_type=Path))
@click.option(
    "--component", "component_name", required=True, type=click.Choice([c.folder for c in Component])
)
@click.option("--out", type=click.Path(path_type=Path), help="Write the certificate here.")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
def sign_csr_command(
    name: str, csr: Path, component_name: str, out: Path | None, force: bool
) -> None:
    """Sign CSR for a component of deployment NAME (PEM certificate to stdout or --out).

    The CA sets the identity; requested names must be among the component's hosts.
    """
    deployment = DeploymentName(name)
    data = read_regular_file(csr, _MAX_CSR, "a CSR")
    with CertServer(Settings.from_env()) as service:
        cert = service.sign_csr(deployment, Component.parse(component_name), data, str(csr))
    pem = certificate_pem(cert)
    if out is None:
        click.echo(pem.decode(), nl=False)
        return
    staged = StagedFile(out, pem)
    try:
        staged.place(replace=force)
    except BaseException:
        staged.undo()
        raise
    staged.finish()
    click.echo(str(out))
