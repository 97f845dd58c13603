"""The ``certserver`` command line: thin commands over :mod:`certserver.service`."""

from __future__ import annotations

import os
from typing import Any

import click

from certserver.cli.deployment import deployment
from certserver.cli.inspect import inspect_command
from certserver.cli.master_key import master_key
from certserver.errors import CertserverError

#: Exit code of a domain error (bad input, store or key problem). Usage errors exit 2.
EXIT_ERROR = 1
EXIT_INTERNAL = 70


class _Group(click.Group):
    """Turns domain errors into one line on stderr and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CertserverError as exc:
            click.echo(f"certserver: error: {exc.message}", err=True)
            ctx.exit(EXIT_ERROR)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("certserver: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            if os.environ.get("CERTSERVER_DEBUG"):
                raise
            click.echo(
                f"certserver: internal error: {type(exc).__name__} "
                "(set CERTSERVER_DEBUG=1 for the traceback)",
                err=True,
            )
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="certserver")
def cli() -> None:
    """Deployment certificate server: identity, CA and component certificates per deployment."""


cli.add_command(deployment)
cli.add_command(inspect_command)
cli.add_command(master_key)


def main() -> None:
    cli.main(prog_name="certserver")


if __name__ == "__main__":  # pragma: no cover
    main()
