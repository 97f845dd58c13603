"""``certserver inspect FILE…``: what a certificate, key, CSR or package holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from certserver.cli import output
from certserver.errors import FileProblem
from certserver.inspection import Report, inspect_bytes
from certserver.service import utc_now

_MAX_INPUT = 16 << 20


@click.command("inspect")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect_command(files: tuple[Path, ...], as_json: bool) -> None:
    """Describe certificates, keys, CSRs and packages (PEM or DER)."""
    now = utc_now()
    results: list[dict[str, Any]] = []
    for path in files:
        results.append({"file": str(path), "contents": inspect_bytes(_read(path), str(path), now)})
    if as_json:
        output.emit_json(results)
        return
    for index, result in enumerate(results):
        if index:
            click.echo()
        click.echo(f"{result['file']}:")
        for report in result["contents"]:
            click.echo(_render(report, indent=2))


def _read(path: Path) -> bytes:
    try:
        if path.stat().st_size > _MAX_INPUT:
            raise FileProblem(path, "too large to be a certificate, key, CSR or package")
        return path.read_bytes()
    except FileNotFoundError:
        raise FileProblem(path, "no such file") from None
    except IsADirectoryError:
        raise FileProblem(path, "is a directory") from None
    except OSError as exc:
        raise FileProblem(path, f"cannot read: {exc.strerror}") from None


def _render(report: Report, indent: int) -> str:
    pad = " " * indent
    kind = report["kind"]
    if kind == "package":
        return _render_package(report, indent)
    if kind == "encrypted-private-key":
        return f"{pad}encrypted private key (not decrypted)"
    if kind in ("private-key", "public-key"):
        label = "private key" if kind == "private-key" else "public key"
        return (
            f"{pad}{label}: {report['key']}\n"
            f"{output.fields([('public key SHA-256', report['public_key_sha256'])], indent + 2)}"
        )
    pairs: list[tuple[str, str]] = [("subject", report["subject"])]
    if kind == "certificate":
        pairs += [
            ("issuer", report["issuer"] + ("  (self-signed)" if report["self_signed"] else "")),
            ("serial", f"{report['serial']} ({report['serial_bits']} bits)"),
            ("not before", report["not_before"]),
            ("not after", f"{report['not_after']}  ({report['days_left']} days left)"),
            ("status", report["status"]),
        ]
    pairs.append(("key", report["key"]))
    if kind == "certificate":
        pairs += [
            ("signature", report["signature_algorithm"]),
            ("SHA-256", output.fingerprint(report["fingerprint_sha256"])),
        ]
    else:
        pairs.append(("signature valid", "yes" if report["signature_valid"] else "NO"))
    identity = report.get("identity")
    if identity:
        if "error" in identity:
            pairs.append(("identity", f"INVALID: {identity['error']}"))
        else:
            pairs.append(
                ("identity", f"CCID {identity['ccid']}, component {identity['component']}")
            )
    if report["sans"]:
        pairs.append(("SANs", ", ".join(report["sans"])))
    for ext in report["extensions"]:
        if ext["name"] == "subjectAltName":
            continue  # shown above as SANs
        flag = " (critical)" if ext["critical"] else ""
        pairs.append((f"{ext['name']}{flag}", ext["value"]))
    title = "certificate" if kind == "certificate" else "certificate signing request"
    return f"{pad}{title}\n{output.fields(pairs, indent + 2)}"


def _render_package(report: Report, indent: int) -> str:
    pad = " " * indent
    lines = [
        f"{pad}certserver package of deployment {report['deployment']}",
        output.fields(
            [
                ("CCID", str(report["ccid"])),
                ("created", str(report["created_at"])),
                ("package version", str(report["package_version"])),
                ("manifest", "OK" if report["manifest_ok"] else "PROBLEMS"),
            ],
            indent + 2,
        ),
    ]
    lines += [f"{pad}  problem: {problem}" for problem in report["problems"]]
    for member in report["members"]:
        lines.append(f"{pad}  {member['path']} (mode {member['mode']})")
        for item in member["contents"]:
            if item["kind"] == "certificate":
                ident = item.get("identity") or {}
                lines.append(
                    f"{pad}    certificate {item['subject']}, "
                    f"not after {item['not_after']} ({item['days_left']} days), "
                    f"identity {ident.get('spiffe_id', '-')}"
                )
            else:
                lines.append(f"{pad}    {item['kind']}: {item.get('key', '')}".rstrip(": "))
    return "\n".join(lines)
