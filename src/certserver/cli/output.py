"""Plain, aligned text for people; JSON for scripts."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from certserver.clock import iso
from certserver.plain import plain


def printable(text: str) -> str:
    """``text`` with control and format characters escaped, so output cannot forge lines
    or drive the terminal (names, SANs and paths come from files we did not write)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def fingerprint(hex_digest: str, algorithm: str = "SHA256") -> str:
    """``SHA256:AB:CD:…``, the form ``openssl x509 -fingerprint -sha256`` prints."""
    pairs = [hex_digest[i : i + 2] for i in range(0, len(hex_digest), 2)]
    return f"{algorithm}:" + ":".join(pairs).upper()


def when(moment: dt.datetime) -> str:
    return iso(moment)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: int = 0) -> str:
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    pad = " " * indent
    lines = [pad + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append(pad + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def fields(pairs: Sequence[tuple[str, str]], indent: int = 2) -> str:
    pairs = [(printable(label), printable(value)) for label, value in pairs]
    width = max(len(label) for label, _ in pairs)
    return "\n".join(f"{' ' * indent}{label.ljust(width)}  {value}" for label, value in pairs)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(plain(value), indent=2, sort_keys=True))


_F = TypeVar("_F", bound=Callable[..., Any])


def out_dir_option(what: str) -> Callable[[_F], _F]:
    """``--out DIR`` for a command that writes ``what`` (default: the current directory)."""
    return click.option(
        "--out",
        "out_dir",
        type=click.Path(path_type=Path),
        default=Path(),
        help=f"Directory for {what} (default: current directory).",
    )
