"""Self-renewal on a component host: the component asks the service for a new certificate
over mutual TLS, its current certificate being the credential, and installs it atomically.

A new key is made here and never leaves the host (the service signs a CSR for it).
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from certserver.clock import utc_now
from certserver.csr import component_csr, csr_pem
from certserver.errors import CertserverError, FileProblem, InvalidInput
from certserver.files import place_all
from certserver.hosts import hosts_in
from certserver.keys import KeySpec, profile_spec, spec_of, to_pkcs8_pem
from certserver.mtls import ComponentCredentials, identity_of
from certserver.pem import ParseError, parse
from certserver.profiles import Organization

_TIMEOUT = 30


@dataclass(frozen=True, slots=True)
class SelfRenewal:
    renewed: bool
    days_left: int  # of the certificate now in place
    certificate: x509.Certificate


def renew_here(
    url: str,
    folder: Path,
    *,
    before: dt.timedelta,
    server_ca: Path | None = None,
    now: dt.datetime | None = None,
) -> SelfRenewal:
    """Renew the component in ``folder`` through the service at ``url`` when its
    certificate expires within ``before``; else leave it."""
    import httpx

    now = now or utc_now()
    credentials = ComponentCredentials.from_folder(folder)
    current = _certificate(credentials.cert_file)
    left = (current.not_valid_after_utc - now) // dt.timedelta(days=1)
    if current.not_valid_after_utc - now > before:
        return SelfRenewal(False, left, current)
    spec = _spec_of_key(credentials.key_file, current)
    key = spec.generate()
    identity = identity_of(current)
    organization = current.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    org = Organization(str(organization[0].value) if organization else "certserver")
    request = component_csr(identity, org, list(hosts_in(current)), key, spec)
    context = ssl.create_default_context(cafile=str(server_ca) if server_ca else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(credentials.cert_file), str(credentials.key_file))
    try:
        with httpx.Client(verify=context, timeout=_TIMEOUT) as http:
            answer = http.post(
                url.rstrip("/") + "/api/v1/self/renew",
                files={"csr": ("renew.csr", csr_pem(request), "application/pkcs10")},
            )
    except httpx.HTTPError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in repr(exc) or "certificate verify failed" in str(exc):
            raise InvalidInput(
                f"{url}: the service's certificate does not verify: pin it with --server-ca "
                "(for its self-issued one, $CERTSERVER_HOME/serve/server.crt on the server)"
            ) from None
        raise InvalidInput(f"{url}: cannot reach the service ({type(exc).__name__})") from None
    if answer.status_code != 200:
        try:
            detail = str(answer.json().get("detail", answer.text))
        except ValueError:
            detail = answer.text[:200]
        raise InvalidInput(f"{url}: renewal refused ({answer.status_code}): {detail}")
    try:
        issued = x509.load_pem_x509_certificate(answer.content)
    except ValueError:
        raise InvalidInput(f"{url}: the answer is not a certificate") from None
    if identity_of(issued) != identity or issued.public_key() != key.public_key():
        raise InvalidInput(f"{url}: the certificate is not for this component's new key")
    problem = _chain_problem(issued, credentials, now)
    if problem is not None:
        raise InvalidInput(
            f"{url}: the new certificate does not verify to {credentials.ca_file} ({problem}); "
            "install the deployment's current package first (a CA rotation?)"
        )
    owners = {path: path.stat() for path in (credentials.key_file, credentials.cert_file)}
    place_all(
        {
            credentials.key_file: to_pkcs8_pem(key),
            credentials.cert_file: issued.public_bytes(serialization.Encoding.PEM),
        },
        replace=True,
    )
    for path, before_stat in owners.items():  # as they were: the component must read them
        os.chown(path, before_stat.st_uid, before_stat.st_gid)
        path.chmod(stat.S_IMODE(before_stat.st_mode))
    return SelfRenewal(True, (issued.not_valid_after_utc - now) // dt.timedelta(days=1), issued)


def _chain_problem(
    cert: x509.Certificate, credentials: ComponentCredentials, now: dt.datetime
) -> str | None:
    """Why ``cert`` would not verify to the component's own trust, or None."""
    anchors = parse(credentials.ca_file.read_bytes()).certificates
    intermediates = (
        parse(credentials.chain_file.read_bytes()).certificates if credentials.chain_file else []
    )
    try:
        verifier = PolicyBuilder().store(Store(anchors)).time(now).build_client_verifier()
        verifier.verify(cert, intermediates)
    except (VerificationError, ValueError) as exc:
        return str(exc).split(" (encountered")[0]
    return None


def _certificate(path: Path) -> x509.Certificate:
    try:
        certs = parse(path.read_bytes()).certificates
    except (OSError, ParseError) as exc:
        raise FileProblem(path, str(exc)) from None
    if not certs:
        raise FileProblem(path, "holds no certificate")
    return certs[0]


def _spec_of_key(path: Path, cert: x509.Certificate) -> KeySpec:
    try:
        keys = parse(path.read_bytes()).private_keys
    except (OSError, ParseError) as exc:
        raise FileProblem(path, str(exc)) from None
    if len(keys) != 1:
        raise FileProblem(path, "holds no single private key")
    try:
        return spec_of(keys[0])
    except CertserverError:
        return profile_spec(cert.public_key())
