"""``certserver serve | token … | audit | db upgrade``: the service and its accounts."""

from __future__ import annotations

from pathlib import Path

import click

from certserver.accounts import Role, parse_duration
from certserver.cli import output
from certserver.config import Settings
from certserver.errors import FileProblem, InvalidInput
from certserver.files import read_regular_file
from certserver.pem import ParseError, parse
from certserver.service import CertServer

_ROLES = [role.value for role in Role]


def _service() -> CertServer:
    return CertServer(Settings.from_env())


@click.command("serve")
@click.option("--bind", default="127.0.0.1:8443", show_default=True, metavar="HOST:PORT")
@click.option("--tls-cert", type=click.Path(path_type=Path), help="Server certificate (PEM).")
@click.option("--tls-key", type=click.Path(path_type=Path), help="Its private key (PEM).")
@click.option(
    "--client-ca",
    type=click.Path(path_type=Path),
    help="Ask for client certificates issued by this CA (an alternative to tokens).",
)
@click.option(
    "--insecure-http", is_flag=True, help="Plain HTTP, for a reverse proxy on the same host."
)
@click.option(
    "--forwarded-allow-ips",
    metavar="IPS",
    help="With --insecure-http: the proxy addresses whose X-Forwarded-For is believed.",
)
def serve_command(
    bind: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    client_ca: Path | None,
    insecure_http: bool,
    forwarded_allow_ips: str | None,
) -> None:
    """Run the HTTPS API, the web page (/ui/) and /metrics over the store."""
    import uvicorn

    from certserver.asgi import uvicorn_tls_config
    from certserver.web import create_app
    from certserver.web.server import Bind, is_loopback, own_certificate, tls_context

    where = Bind.parse(bind)
    settings = Settings.from_env()
    with CertServer(settings) as service:
        service.list_deployments()  # the store opens (and is migrated) before serving
        app = create_app(settings, service=service)
        if insecure_http:
            if tls_cert or tls_key or client_ca:
                raise InvalidInput("--insecure-http takes no --tls-cert, --tls-key or --client-ca")
            if not is_loopback(where.host):
                click.echo(
                    "certserver: warning: plain HTTP on a non-loopback address: tokens cross "
                    "the network in clear",
                    err=True,
                )
            config = uvicorn.Config(
                app,
                host=where.host,
                port=where.port,
                log_level="info",
                proxy_headers=forwarded_allow_ips is not None,
                forwarded_allow_ips=forwarded_allow_ips,
            )
            click.echo(f"certserver: serving http://{where.host}:{where.port}/", err=True)
        else:
            if forwarded_allow_ips is not None:
                raise InvalidInput("--forwarded-allow-ips goes with --insecure-http only")
            if (tls_cert is None) != (tls_key is None):
                raise InvalidInput("give both --tls-cert and --tls-key, or neither")
            if tls_cert is None or tls_key is None:
                tls_cert, tls_key, print_ = own_certificate(settings, where)
                click.echo(
                    f"certserver: using its own certificate {tls_cert} "
                    f"({output.fingerprint(print_)})",
                    err=True,
                )
            make = tls_context(tls_cert, tls_key, client_ca, service.component_anchors())
            config = uvicorn_tls_config(
                app, make, host=where.host, port=where.port, log_level="info", proxy_headers=False
            )
            click.echo(f"certserver: serving https://{where.host}:{where.port}/", err=True)
        uvicorn.Server(config).run()


@click.group()
def token() -> None:
    """API credentials: tokens (and client certificates) with a role."""


@token.command("create")
@click.option("--role", type=click.Choice(_ROLES), required=True)
@click.option("--name", default="api", show_default=True, help="Who or what it is for.")
@click.option("--expires", metavar="DURATION", help="e.g. 90d, 12h (default: never).")
def token_create(role: str, name: str, expires: str | None) -> None:
    """Make a token. It is printed once, here, and kept only as a hash."""
    lifetime = parse_duration(expires) if expires else None
    with _service() as service:
        credential, secret = service.create_token(name, Role(role), lifetime)
    until = output.when(credential.expires_at) if credential.expires_at else "never"
    click.echo(
        f"certserver: token {credential.credential_id} ({credential.role}, expires {until}); "
        "it is shown only now:",
        err=True,
    )
    click.echo(secret)


@token.command("add-cert")
@click.option("--role", type=click.Choice(_ROLES), required=True)
@click.option("--name", required=True, help="Who or what it is for.")
@click.option("--cert", "cert_file", type=click.Path(path_type=Path), required=True)
@click.option("--expires", metavar="DURATION", help="e.g. 90d (default: never).")
def token_add_cert(role: str, name: str, cert_file: Path, expires: str | None) -> None:
    """Let a client certificate act with a role (serve with --client-ca that issued it)."""
    data = read_regular_file(cert_file, 1 << 20, "a certificate")
    try:
        certs = parse(data).certificates
    except ParseError as exc:
        raise FileProblem(cert_file, str(exc)) from None
    if len(certs) != 1:
        raise FileProblem(cert_file, "holds no single certificate")
    lifetime = parse_duration(expires) if expires else None
    with _service() as service:
        credential = service.add_client_certificate(name, Role(role), certs[0], lifetime)
    click.echo(f"Added client certificate {credential.credential_id} ({credential.role})")


@token.command("list")
@click.option("--json", "as_json", is_flag=True)
def token_list(as_json: bool) -> None:
    """Every credential (never a secret)."""
    with _service() as service:
        found = service.credentials()
    if as_json:
        output.emit_json(found)
        return
    rows = [
        [
            c.credential_id,
            c.kind.value,
            c.name,
            c.role.value,
            output.when(c.created_at),
            output.when(c.expires_at) if c.expires_at else "never",
            output.when(c.revoked_at) if c.revoked_at else "-",
        ]
        for c in found
    ]
    click.echo(output.table(["ID", "KIND", "NAME", "ROLE", "CREATED", "EXPIRES", "REVOKED"], rows))


@token.command("revoke")
@click.argument("credential_id")
def token_revoke(credential_id: str) -> None:
    """Refuse a token or client certificate from now on."""
    with _service() as service:
        revoked = service.revoke_credential(credential_id)
    click.echo(f"Revoked {revoked.kind} {revoked.credential_id} ({revoked.name})")


@click.command("audit")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def audit_command(limit: int, as_json: bool) -> None:
    """The audit log, newest first: who did what, when, from where, and the result."""
    with _service() as service:
        entries = service.audit_entries(limit=limit)
    if as_json:
        output.emit_json(entries)
        return
    rows = [[output.when(e.at), e.actor, e.action, e.target, e.source, e.result] for e in entries]
    click.echo(output.table(["WHEN", "WHO", "WHAT", "TARGET", "FROM", "RESULT"], rows))


@click.group()
def db() -> None:
    """The store's schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Run the Alembic migrations up to this certserver's schema (made if missing)."""
    from certserver.opening import open_store
    from certserver.store import migrate

    store = open_store(Settings.from_env(), create=True)
    try:
        with store.transaction() as connection:
            revision = migrate.current_revision(connection)
    finally:
        store.close()
    click.echo(f"{store.location}: schema {revision} (head {migrate.SCHEMA_HEAD})")
