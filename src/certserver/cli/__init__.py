"""The ``certserver`` command line: thin commands over :mod:`certserver.service`."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import click

from certserver.cli.client_cert import client_cert
from certserver.cli.demo import demo_command
from certserver.cli.deployment import deployment
from certserver.cli.inspect import inspect_command
from certserver.cli.install import doctor_command, install_command
from certserver.cli.lifecycle import (
    ca_group,
    crl_command,
    renew_command,
    revoke_command,
    status_command,
)
from certserver.cli.link import link
from certserver.cli.master_key import master_key
from certserver.cli.output import printable
from certserver.cli.service import audit_command, db, serve_command, token
from certserver.cli.sign import sign_csr_command
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
            click.echo(f"certserver: error: {printable(exc.message)}", err=True)
            ctx.exit(EXIT_ERROR)
        except BrokenPipeError:  # the reader went away (| head): stop quietly, as tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(141)
        except OSError as exc:  # an I/O failure no check foresaw: still one line, no traceback
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(
                f"certserver: error: {printable(where + (exc.strerror or str(exc)))}", err=True
            )
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
cli.add_command(install_command)
cli.add_command(doctor_command)
cli.add_command(sign_csr_command)
cli.add_command(link)
cli.add_command(demo_command)
cli.add_command(serve_command)
cli.add_command(token)
cli.add_command(audit_command)
cli.add_command(db)
cli.add_command(status_command)
cli.add_command(revoke_command)
cli.add_command(crl_command)
cli.add_command(renew_command)
cli.add_command(ca_group)
cli.add_command(client_cert)


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so half-made files are removed on the way out."""
    raise SystemExit(128 + signum)


def main() -> None:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    cli.main(prog_name="certserver")


if __name__ == "__main__":  # pragma: no cover
    main()
