"""``certserver demo``: see mutual TLS between components work (and refuse), on loopback."""

from __future__ import annotations

import click

from certserver.demo import run_demo
from certserver.identity import DeploymentName


@click.command("demo")
@click.option(
    "--deployment",
    "name",
    metavar="NAME",
    help="Use this deployment of your store (default: a new one in a throwaway store).",
)
def demo_command(name: str | None) -> None:
    """Start a CCM-like server and CCO, GUA and other clients on loopback, and show what the
    server verified for each: accepted with its identity, or refused and why.

    Everything happens in a temporary folder that is removed at the end; with --deployment
    the package of NAME is read from your store (which is not changed).
    """
    ok = run_demo(click.echo, deployment=DeploymentName(name) if name else None)
    if not ok:
        raise SystemExit(1)
