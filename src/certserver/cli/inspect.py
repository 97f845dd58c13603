"""``certserver inspect FILE…``: what a certificate, key, CSR or package holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from certserver.cli import output
from certserver.clock import utc_now
from certserver.files import read_passphrase, read_regular_file
from certserver.inspection import Report, inspect_bytes

_MAX_INPUT = 16 << 20


@click.command("inspect")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--passphrase-file",
    "--p12-passphrase-file",
    "--key-passphrase-file",
    "passphrase_file",
    type=click.Path(path_type=Path),
    help="File whose first line opens PKCS#12 files and encrypted keys (never on the command "
    "line).",
)
@click.pass_context
def inspect_command(
    ctx: click.Context, files: tuple[Path, ...], as_json: bool, passphrase_file: Path | None
) -> None:
    """Describe certificates, keys, CSRs and packages (PEM or DER).

    Exits 1 when a package does not match its manifest.
    """
    now = utc_now()
    passphrase = read_passphrase(passphrase_file) if passphrase_file else None
    results: list[dict[str, Any]] = []
    for path in files:
        contents = inspect_bytes(_read(path), str(path), now, passphrase=passphrase)
        results.append({"file": str(path), "contents": contents})
    if as_json:
        output.emit_json(results)
    else:
        for index, result in enumerate(results):
            if index:
                click.echo()
            click.echo(output.printable(f"{result['file']}:"))
            for report in result["contents"]:
                click.echo(_render(report, indent=2))
    damaged = [
        result["file"]
        for result in results
        for report in result["contents"]
        if report["kind"] == "package" and not report["manifest_ok"]
    ]
    for file in damaged:
        message = f"certserver: error: {file}: package does not match its manifest"
        click.echo(output.printable(message), err=True)
    if damaged:
        ctx.exit(1)


def _read(path: Path) -> bytes:
    return read_regular_file(path, _MAX_INPUT, "a certificate, key, CSR or package")


def _validity(report: Report) -> str:
    days = report["days_left"]
    if report["status"] == "expired":
        return f"{report['not_after']}  (expired {-days} days ago)"
    return f"{report['not_after']}  ({days} days left)"


def _render(report: Report, indent: int) -> str:
    pad = " " * indent
    kind = report["kind"]
    if kind == "package":
        return _render_package(report, indent)
    if kind == "nested-zip":
        return f"{pad}a zip inside the package (not opened)"
    if kind == "encrypted-private-key":
        return f"{pad}encrypted private key (not decrypted)"
    if kind in ("private-key", "public-key"):
        label = "private key" if kind == "private-key" else "public key"
        public = output.fingerprint(report["public_key_sha256"])
        details = output.fields([("public key", public)], indent + 2)
        return f"{pad}{label}: {report['key']} bits\n{details}"
    pairs: list[tuple[str, str]] = [("subject", report["subject"])]
    if kind == "certificate":
        pairs += [
            ("issuer", report["issuer"] + ("  (self-signed)" if report["self_signed"] else "")),
            ("serial", f"{report['serial']} ({report['serial_bits']} bits)"),
            ("not before", report["not_before"]),
            ("not after", _validity(report)),
            ("status", report["status"]),
        ]
    pairs.append(("key", f"{report['key']} bits"))
    if kind == "certificate":
        pairs += [
            ("signature", report["signature_algorithm"]),
            ("fingerprint", output.fingerprint(report["fingerprint_sha256"])),
            ("", output.fingerprint(report["fingerprint_sha1"], "SHA1")),
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
        f"{pad}certserver package of deployment {output.printable(str(report['deployment']))}",
        output.fields(
            [
                ("CCID", str(report["ccid"])),
                ("created", str(report["created_at"])),
                ("package version", str(report["package_version"])),
                ("manifest", "OK" if report["manifest_ok"] else "DOES NOT MATCH"),
            ],
            indent + 2,
        ),
    ]
    lines += [f"{pad}  problem: {output.printable(problem)}" for problem in report["problems"]]
    for member in report["members"]:
        lines.append(f"{pad}  {output.printable(member['path'])}  mode {member['mode']}")
        for item in member["contents"]:
            lines.append(f"{pad}    {output.printable(_summary(item))}")
    return "\n".join(lines)


def _summary(item: Report) -> str:
    """One short line for a package member."""
    kind = str(item["kind"])
    if kind == "certificate":
        identity = item.get("identity") or {}
        who = identity.get("spiffe_id") or item["subject"]
        if not identity and item["self_signed"]:
            who = "self-signed " + who
        return f"certificate {who}, {item['key']} bits, not after {item['not_after']}"
    if kind == "private-key":
        return f"private key, {item['key']} bits"
    if kind == "links":
        return "accepts linked deployments " + ", ".join(item["ccids"])
    return kind.replace("-", " ")
