"""The use cases. The CLI, the API and the web page call only :class:`CertServer`, which
gathers them (enterprise imports, links and accounts live in their own modules)."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certserver import package
from certserver.account_cases import AccountCases
from certserver.accounts import Forbidden
from certserver.authority import CertificateAuthority
from certserver.csr import (
    ComponentRequest,
    build_csrs_zip,
    ca_csr,
    ca_csr_file_name,
    component_csr,
    csr_pem,
    csrs_file_name,
)
from certserver.enterprise_cases import EnterpriseCases, ImportResult, Supplied
from certserver.errors import (
    CertserverError,
    DeploymentExists,
    FileProblem,
    InvalidInput,
    PolicyRefused,
)
from certserver.files import StagedFile, check_writable_dir
from certserver.hosts import Host
from certserver.identity import Ccid, Component, DeploymentName, Identity
from certserver.keys import (
    KeySpec,
    PrivateKey,
    profile_spec,
    to_pkcs8_der,
)
from certserver.link_cases import LinkCases
from certserver.masterkey import MasterKey
from certserver.mtls import identity_of
from certserver.opening import never_created
from certserver.package import ComponentMaterial, DeploymentMaterial, fingerprint, serial_hex
from certserver.pem import ParseError, certificates_pem, parse
from certserver.policy import csr_violations
from certserver.profiles import (
    BACKDATE,
    CA_VALIDITY_DAYS,
    COMPONENT_VALIDITY_DAYS,
    DEFAULT_ORGANIZATION,
    CaMode,
    Organization,
)
from certserver.records import (
    DeploymentView,
    Plan,
    authority_of,
    chain_of,
    pending_record,
    to_material,
    to_record,
    to_view,
)
from certserver.revocation_cases import RevocationCases
from certserver.store import (
    CertificateRecord,
    DeploymentQuery,
    DeploymentRecord,
    DeploymentState,
    DeploymentSummary,
    Status,
)
from certserver.usecases import Clock
from certserver.usecases import audited as _audited
from certserver.usecases import check_target as _check_target
from certserver.usecases import first_arg as _first


@dataclass(frozen=True, slots=True)
class CreateRequest:
    name: DeploymentName
    #: Where the file goes (the package, or the CSRs); None writes no file (the API).
    out_dir: Path | None = None
    organization: Organization = DEFAULT_ORGANIZATION
    hosts: Mapping[Component, Sequence[Host]] | None = None
    key_spec: KeySpec = KeySpec.EC_P256
    validity_days: int = COMPONENT_VALIDITY_DAYS
    force: bool = False
    ca_mode: CaMode = CaMode.CERTSERVER

    def __post_init__(self) -> None:
        if not 1 <= self.validity_days <= CA_VALIDITY_DAYS:
            raise InvalidInput(
                f"invalid validity {self.validity_days} days: component certificates need "
                f"1 day or more and may not outlive the {CA_VALIDITY_DAYS}-day deployment CA"
            )

    @property
    def file_name(self) -> str:
        """What create writes: the package, or the CSR(s) for the enterprise CA."""
        if self.ca_mode is CaMode.ENTERPRISE_INTERMEDIATE:
            return ca_csr_file_name(self.name)
        if self.ca_mode is CaMode.ENTERPRISE_LEAF:
            return csrs_file_name(self.name)
        return package.package_file_name(self.name)

    @property
    def plan(self) -> Plan:
        return Plan(self.ca_mode, self.validity_days, self.hosts or {})


@dataclass(frozen=True, slots=True)
class CreateResult:
    deployment: DeploymentView
    #: The package, or (for an enterprise CA) the CSR file or zip of CSRs to have signed.
    file_name: str
    data: bytes = field(repr=False)
    #: Where it was written (None when the request named no directory).
    written_to: Path | None = None

    @property
    def path(self) -> Path:
        assert self.written_to is not None, "this result was not written to a file"
        return self.written_to

    @property
    def package_path(self) -> Path:
        return self.path


class CertServer(EnterpriseCases, LinkCases, AccountCases, RevocationCases):
    #: The certificate a component renews itself with (see :meth:`renew_for_peer`).
    _peer: x509.Certificate | None = None

    """certserver's use cases over one store and master key, opened on first use.

    ``actor`` is who the audit log names for the changes and downloads made through this
    object (the local user, for the command line); :meth:`for_actor` gives a view for
    another actor (an API caller) over the same store.
    """

    # -- use cases -------------------------------------------------------------------------

    @_audited("deployment.create", lambda request, *_a, **_k: request.name.value)
    def create_deployment(self, request: CreateRequest) -> CreateResult:
        """CCID, CA and every component's certificate; rows in the store; the package on disk.

        With an enterprise CA, the keys and the CSR(s) for it instead, the deployment
        recorded as pending. Either all of it happens or none: a failure leaves no file and
        no rows behind.
        """
        if request.out_dir is not None:
            check_writable_dir(request.out_dir)
        store, key = self._open(create=True)
        if store.deployment_exists(request.name):
            raise DeploymentExists(f"deployment {request.name} already exists")
        target = None
        if request.out_dir is not None:
            target = _check_target(request.out_dir, request.file_name, force=request.force)
        record, data = self._make(request, key)
        self._commit(store, target, data, request.force, lambda c: store.add_deployment(c, record))
        return CreateResult(to_view(record), request.file_name, data, target)

    def list_deployments(self, query: DeploymentQuery | None = None) -> Sequence[DeploymentSummary]:
        """Deployments (every one, or those ``query`` selects), in name order. Needs no
        master key: nothing secret."""
        if never_created(self.settings):
            return []
        return self._open_store(create=False).list_deployments(query)

    def count_deployments(self, query: DeploymentQuery | None = None) -> int:
        if never_created(self.settings):
            return 0
        return self._open_store(create=False).count_deployments(query)

    def show_deployment(self, name: DeploymentName) -> DeploymentView:
        """One deployment's certificates (public data: needs no master key)."""
        return to_view(self._open_store(create=False).get_deployment(name))

    @_audited("certificate.sign-csr", lambda name, component, *_a, **_k: f"{name}/{component}")
    def sign_csr(
        self, name: DeploymentName, component: Component, csr_data: bytes, source: str
    ) -> x509.Certificate:
        """Sign a component's CSR made on its host (the key never travels), under policy
        (see :meth:`sign_csr_unaudited`); audited."""
        return self.sign_csr_unaudited(name, component, csr_data, source)

    def sign_csr_unaudited(
        self,
        name: DeploymentName,
        component: Component,
        csr_data: bytes,
        source: str,
        *,
        replacing: x509.Certificate | None = None,
    ) -> x509.Certificate:
        """Sign a component's CSR made on its host (the key never travels), under policy.

        The CA sets the identity (subject, URI SAN); requested names must be among the
        component's recorded hosts. The certificate is recorded in the store.
        """
        try:
            found = parse(csr_data)
        except ParseError as exc:
            raise FileProblem(source, str(exc)) from None
        if len(found.csrs) != 1:
            raise FileProblem(source, f"holds {found.describe()}, expected one CSR")
        csr = found.csrs[0]
        if replacing is not None and csr.public_key() == replacing.public_key():
            raise PolicyRefused(source, ["asks to certify the current key again: make a new key"])
        store, key = self._open(create=False)
        record = store.signing_record(name, component)
        allowed = record.hosts.get(component) or next(
            (c.hosts for c in record.certificates if c.component is component), ()
        )
        problems, hosts = csr_violations(csr, component, allowed)
        if problems:
            raise PolicyRefused(source, problems)
        ca = self._publishing(authority_of(record, key, store.location), name)
        now = self.clock().astimezone(dt.UTC).replace(microsecond=0)
        days_left = (ca.certificate.not_valid_after_utc - now).days
        if days_left < 1:
            raise InvalidInput(f"the CA of deployment {name} has expired or expires today")
        packaged = next((c for c in record.certificates if c.component is component), None)
        lifetime = (
            round((packaged.not_after - packaged.not_before - BACKDATE) / dt.timedelta(days=1))
            if packaged is not None
            else COMPONENT_VALIDITY_DAYS
        )
        public_key = csr.public_key()
        cert = ca.issue(
            Identity(record.ccid, component),
            public_key,  # type: ignore[arg-type]  # EC or RSA: checked by the policy
            profile_spec(public_key),
            Organization(record.organization),
            hosts,
            now,
            min(lifetime, days_left),  # as long as the deployment's own certificates
        )
        store.add_issued(
            name,
            CertificateRecord(
                component=component,
                cert_der=cert.public_bytes(Encoding.DER),
                key_sealed=b"",  # the key stays on the component's host
                serial=serial_hex(cert),
                fingerprint=fingerprint(cert),
                hosts=tuple(hosts),
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
            ),
            audit=self._ok_entry(),
            supersedes=fingerprint(replacing) if replacing is not None else None,
        )
        self._ok_written()
        return cert

    @_audited("certificate.self-renew", lambda peer, *_a, **_k: _spiffe_of(peer))
    def renew_for_peer(self, peer: x509.Certificate, csr_data: bytes) -> x509.Certificate:
        """Self-renewal: a component presents its current certificate (verified in the TLS
        handshake) and a CSR for a new key; it gets a certificate with the same identity.
        A certificate that is not current (revoked, renewed, unknown) or expired is
        refused."""
        try:
            identity = identity_of(peer)
        except CertserverError as exc:
            raise Forbidden(f"the client certificate carries no identity: {exc.message}") from None
        store = self._open_store(create=False)
        found = store.certificate_by_fingerprint(fingerprint(peer))
        if found is None or found[1] not in (Status.ACTIVE, Status.ISSUED):
            state = "unknown here" if found is None else str(found[1])
            raise Forbidden(f"{identity.spiffe_id}: this certificate is {state}, not current")
        if store.get_deployment(found[0]).ccid != identity.ccid:
            raise Forbidden(f"{identity.spiffe_id}: the identity does not match its deployment")
        if peer.not_valid_after_utc <= self._now():
            raise Forbidden(f"{identity.spiffe_id}: this certificate has expired")
        view = copy.copy(self)
        view._peer = peer
        return view._renew_for(found[0], identity, csr_data)

    def _renew_for(
        self, name: DeploymentName, identity: Identity, csr_data: bytes
    ) -> x509.Certificate:
        return self.sign_csr_unaudited(
            name, identity.component, csr_data, "the CSR", replacing=self._peer
        )

    @_audited("package.download", _first)
    def package_bytes(self, name: DeploymentName) -> tuple[str, bytes]:
        """The package's file name and bytes, made again from the store (audited)."""
        return self._package_bytes(name)

    def _package_bytes(self, name: DeploymentName) -> tuple[str, bytes]:
        record = self._open_store(create=False).get_deployment(name)  # unknown: no key needed
        store, key = self._open(create=False)
        material = to_material(record, key, store.location)
        return material.file_name, package.build(material)

    @_audited("package.export", _first)
    def export_package(self, name: DeploymentName, out_dir: Path, *, force: bool) -> Path:
        check_writable_dir(out_dir)
        file_name, data = self._package_bytes(name)
        staged = StagedFile(out_dir / file_name, data)
        try:
            staged.place(replace=force)
        except BaseException:
            staged.undo()
            raise
        staged.finish()
        return staged.target

    def ca_certificates(self, name: DeploymentName) -> bytes:
        """The deployment's trust anchors, PEM (public)."""
        record = self._open_store(create=False).get_deployment(name)
        if record.state is DeploymentState.PENDING:
            raise InvalidInput(f"deployment {name} has no CA certificate yet")
        anchors, _ = chain_of(record, self._open_store(create=False).location)
        return certificates_pem(list(anchors))

    # -- credentials and the audit log ----------------------------------------------------

    def certificate_counts(self) -> dict[str, int]:
        if never_created(self.settings):
            return {}
        return self._open_store(create=False).certificate_counts()

    # -- internals -------------------------------------------------------------------------

    def _make(self, request: CreateRequest, key: MasterKey) -> tuple[DeploymentRecord, bytes]:
        """The new deployment's rows and the file create writes."""
        if request.ca_mode is CaMode.CERTSERVER:
            material, ca_key_der = self._mint(request)
            record = to_record(material, ca_key_der, request.key_spec, request.plan, key)
            return record, package.build(material)
        now, ccid, spec, org = self._now(), Ccid.generate(), request.key_spec, request.organization
        hosts = request.hosts or {}
        if request.ca_mode is CaMode.ENTERPRISE_INTERMEDIATE:
            ca_key = spec.generate()
            request_csr = ca_csr(request.name, ccid, org, ca_key, spec)
            keys: list[tuple[Component | None, x509.CertificateSigningRequest, PrivateKey]] = [
                (None, request_csr, ca_key)
            ]
            data = csr_pem(request_csr)
        else:
            keys, requests = [], []
            for component in Component:
                component_key = spec.generate()
                names = tuple(hosts.get(component, ()))
                made = component_csr(Identity(ccid, component), org, names, component_key, spec)
                keys.append((component, made, component_key))
                requests.append(ComponentRequest(component, made, names))
            data = build_csrs_zip(request.name, ccid, now, requests)
        record = pending_record(request.name, ccid, org.value, spec, now, request.plan, keys, key)
        return record, data

    def _mint(self, request: CreateRequest) -> tuple[DeploymentMaterial, bytes]:
        """The deployment's material and its CA key (PKCS#8 DER), all in memory."""
        now = self._now()
        ccid = Ccid.generate()
        spec = request.key_spec
        ca = self._publishing(
            CertificateAuthority.create(request.name, ccid, request.organization, spec, now),
            request.name,
        )
        hosts = request.hosts or {}
        components = []
        for component in Component:
            component_key = spec.generate()
            cert = ca.issue(
                Identity(ccid, component),
                component_key.public_key(),
                spec,
                request.organization,
                hosts.get(component, ()),
                now,
                request.validity_days,
            )
            components.append(ComponentMaterial(component, cert, to_pkcs8_der(component_key)))
        material = DeploymentMaterial(
            name=request.name,
            ccid=ccid,
            organization=request.organization.value,
            created_at=now,
            anchors=(ca.certificate,),
            intermediates=(),
            components=tuple(components),
        )
        return material, to_pkcs8_der(ca.key)


def _spiffe_of(peer: x509.Certificate) -> str:
    try:
        return identity_of(peer).spiffe_id
    except CertserverError:
        return ""


__all__ = ["CertServer", "Clock", "CreateRequest", "CreateResult", "ImportResult", "Supplied"]
