"""``--restart CMD``: commands run (without a shell) after an install changed something."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterable

import click

from certserver.cli import output
from certserver.errors import InvalidInput


def commands(texts: Iterable[str]) -> list[list[str]]:
    """Each ``--restart`` text split as a shell would, refused before anything is done."""
    return [_command(text) for text in texts]


def _command(text: str) -> list[str]:
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise InvalidInput(f"invalid --restart {text!r}: {exc}") from None
    if not words:
        raise InvalidInput("empty --restart command")
    return words


def run(ctx: click.Context, commands: list[list[str]]) -> None:
    """Run each in turn; the first failure is one line and exit 1 (the files stay)."""
    for words in commands:
        shown = shlex.join(words)
        try:
            done = subprocess.run(words, check=False, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "timed out"
            _failed(ctx, shown, str(reason))
            return
        if done.returncode != 0:
            _failed(ctx, shown, f"exit code {done.returncode}")
            return
        click.echo(f"ran {shown}")


def _failed(ctx: click.Context, shown: str, reason: str) -> None:
    click.echo(
        output.printable(
            f"certserver: error: restart command {shown!r} failed ({reason}); "
            "the new files stay installed"
        ),
        err=True,
    )
    ctx.exit(1)
