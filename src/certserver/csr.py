"""Certificate signing requests for an enterprise CA: the deployment CA's, or each
component's, and ``<name>_csrs.zip`` that carries the components' CSRs.

The CSRs ask for exactly the profile of DESIGN.md §3.2; what the enterprise CA really
signed is checked on import (:mod:`certserver.enterprise`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certserver.clock import iso
from certserver.hosts import Host
from certserver.identity import Ccid, Component, DeploymentName, Identity
from certserver.keys import KeySpec, PrivateKey, public_key_sha256
from certserver.profiles import (
    Organization,
    ca_extensions,
    ca_subject,
    component_extensions,
    component_subject,
)

CSRS_FORMAT_VERSION = 1
CSRS_MANIFEST = "manifest.json"


def ca_csr_file_name(name: DeploymentName) -> str:
    return f"{name.value}_ca.csr"


def csrs_file_name(name: DeploymentName) -> str:
    return f"{name.value}_csrs.zip"


def csr_file_name(component: Component) -> str:
    return f"{component.folder}.csr"


def ca_csr(
    name: DeploymentName, ccid: Ccid, org: Organization, key: PrivateKey, spec: KeySpec
) -> x509.CertificateSigningRequest:
    """The deployment CA's CSR: its subject, CA:TRUE pathLen 0, keyCertSign + cRLSign."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(ca_subject(name, ccid, org))
    for extension, critical in ca_extensions(key.public_key()):
        if not isinstance(extension, x509.SubjectKeyIdentifier):
            builder = builder.add_extension(extension, critical)
    return builder.sign(key, spec.signature_hash())


def component_csr(
    identity: Identity, org: Organization, hosts: Sequence[Host], key: PrivateKey, spec: KeySpec
) -> x509.CertificateSigningRequest:
    """A component's CSR with its whole identity (subject, URI SAN, names, usages)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(component_subject(identity, org))
    for extension, critical in component_extensions(identity, hosts, spec, key.public_key()):
        if not isinstance(extension, x509.SubjectKeyIdentifier):
            builder = builder.add_extension(extension, critical)
    return builder.sign(key, spec.signature_hash())


def csr_pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True, slots=True)
class ComponentRequest:
    component: Component
    csr: x509.CertificateSigningRequest
    hosts: tuple[Host, ...]


def build_csrs_zip(
    name: DeploymentName, ccid: Ccid, created_at: dt.datetime, requests: Sequence[ComponentRequest]
) -> bytes:
    """``<name>_csrs.zip``: ``<folder>.csr`` per component and a manifest; deterministic."""
    files: dict[str, bytes] = {}
    rows = []
    for request in sorted(requests, key=lambda r: r.component.folder):
        path = csr_file_name(request.component)
        data = csr_pem(request.csr)
        files[path] = data
        rows.append(
            {
                "path": path,
                "component": request.component.folder,
                "spiffe_id": Identity(ccid, request.component).spiffe_id,
                "subject": request.csr.subject.rfc4514_string(),
                "hosts": [host.text for host in request.hosts],
                "public_key_sha256": public_key_sha256(request.csr.public_key()),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    manifest = {
        "format_version": CSRS_FORMAT_VERSION,
        "deployment": name.value,
        "ccid": ccid.value,
        "created_at": iso(created_at),
        "csrs": rows,
    }
    files[CSRS_MANIFEST] = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    stamp = created_at.astimezone(dt.UTC).timetuple()[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, date_time=stamp)
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, files[path])
    return buffer.getvalue()
