"""The use cases. The CLI (and later the API and the web page) call only this module."""

from __future__ import annotations

import contextvars
import copy
import datetime as dt
import functools
import os
import secrets
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Concatenate, ParamSpec, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import Connection

from certserver import package
from certserver.accounts import (
    Credential,
    CredentialKind,
    Role,
    Unauthenticated,
    check_name,
    new_token,
    parse_token,
    same_digest,
    token_sha256,
)
from certserver.archive import is_zip, read_members
from certserver.audit import OK, Actor, AuditEntry
from certserver.authority import CertificateAuthority
from certserver.clock import utc_now
from certserver.config import Settings
from certserver.csr import (
    ComponentRequest,
    build_csrs_zip,
    ca_csr,
    ca_csr_file_name,
    component_csr,
    csr_pem,
    csrs_file_name,
)
from certserver.enterprise import Chain, PendingLeaf, chain_problem, check_signed_ca, match_leaves
from certserver.errors import (
    CertserverError,
    DeploymentExists,
    FileProblem,
    ImportRefused,
    InvalidInput,
    PolicyRefused,
    StoreError,
    TargetExists,
)
from certserver.federation import TrustBundle, issuer_key_ids
from certserver.files import StagedFile, check_writable_dir
from certserver.hosts import Host
from certserver.identity import Ccid, Component, DeploymentName, Identity
from certserver.keys import (
    KeySpec,
    PrivateKey,
    certificate_key_sha256,
    profile_spec,
    to_pkcs8_der,
)
from certserver.masterkey import MasterKey
from certserver.opening import master_key_for, never_created, open_store
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
    ca_subject,
)
from certserver.records import (
    DeploymentView,
    Plan,
    authority_of,
    authority_record,
    certificate_record,
    chain_of,
    pending_record,
    to_material,
    to_record,
    to_view,
    trust_records,
    unseal_components,
    unseal_pending,
)
from certserver.store import (
    CertificateRecord,
    DeploymentRecord,
    DeploymentState,
    DeploymentSummary,
    LinkRecord,
    Store,
)

Clock = Callable[[], dt.datetime]


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


@dataclass(frozen=True, slots=True)
class Supplied:
    """Bytes a user gave, and where they came from (for messages)."""

    source: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ImportResult:
    deployment: DeploymentView
    #: Where the package was written, once nothing is pending any more (and a directory
    #: was given).
    package_path: Path | None
    imported: tuple[Component | None, ...]
    warnings: tuple[str, ...] = ()
    #: With ``partial``: the problems of the certificates left pending.
    problems: tuple[str, ...] = ()
    #: The package's bytes, once nothing is pending any more.
    package: bytes | None = field(default=None, repr=False)


_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass
class _Call:
    """The audited use case in progress (in this thread or task), and whether its ``ok``
    entry was already committed together with its change."""

    action: str
    target: str
    written: bool = False


_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("certserver_call")


def _audited(
    action: str, target: Callable[..., str]
) -> Callable[
    [Callable[Concatenate[CertServer, _P], _R]], Callable[Concatenate[CertServer, _P], _R]
]:
    """Write one audit entry per call of the use case: its actor, action, target, and how it
    ended (``ok`` or the error's code). A use case whose change is one transaction writes
    the ``ok`` entry in it (:meth:`CertServer._ok_entry`); else it is written after."""

    def wrap(
        method: Callable[Concatenate[CertServer, _P], _R],
    ) -> Callable[Concatenate[CertServer, _P], _R]:
        def audited(self: CertServer, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            about = target(*args, **kwargs)
            call = _Call(action, about)
            token = _CALL.set(call)
            try:
                result = method(self, *args, **kwargs)
            except CertserverError as exc:
                if self.actor.records_refusals and not call.written:
                    self._audit(action, about, exc.code, exc.message)
                raise
            except BaseException:
                if self.actor.records_refusals and not call.written:
                    self._audit(action, about, "error", "")
                raise
            finally:
                _CALL.reset(token)
            if not call.written:
                self._audit(action, about, OK, "")
            return result

        functools.update_wrapper(audited, method)
        return audited

    return wrap


def _first(name: object, *_args: object, **_kwargs: object) -> str:
    """The audit target of use cases whose first argument is the deployment's name."""
    return str(name)


@dataclass
class _Opened:
    """The store and master key, opened on first use and shared by actor views."""

    store: Store | None = None
    key: MasterKey | None = None
    writable: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class CertServer:
    """certserver's use cases over one store and master key, opened on first use.

    ``actor`` is who the audit log names for the changes and downloads made through this
    object (the local user, for the command line); :meth:`for_actor` gives a view for
    another actor (an API caller) over the same store.
    """

    def __init__(
        self, settings: Settings, clock: Clock = utc_now, actor: Actor | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.actor = actor or Actor.local()
        self._opened = _Opened()
        self._owner = True

    def for_actor(self, actor: Actor) -> CertServer:
        view = copy.copy(self)
        view.actor = actor
        view._owner = False
        return view

    def __enter__(self) -> CertServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if not self._owner:
            return
        opened = self._opened
        if opened.store is not None:
            opened.store.close()
            opened.store = None
        opened.key = None

    # -- use cases -------------------------------------------------------------------------

    @_audited("deployment.create", lambda request, *_a, **_k: request.name.value)
    def create_deployment(self, request: CreateRequest) -> CreateResult:
        """CCID, CA and every component's certificate; rows in the store; the package on disk.

        With an enterprise CA, the keys and the CSR(s) for it instead, the deployment
        recorded as pending. Either all of it happens or none: a failure leaves no file and
        no rows behind.
        """
        target = None
        if request.out_dir is not None:
            target = _check_target(request.out_dir, request.file_name, force=request.force)
        store, key = self._open(create=True)
        if store.deployment_exists(request.name):
            raise DeploymentExists(f"deployment {request.name} already exists")
        record, data = self._make(request, key)
        self._commit(store, target, data, request.force, lambda c: store.add_deployment(c, record))
        return CreateResult(to_view(record), request.file_name, data, target)

    @_audited("deployment.import-ca", _first)
    def import_ca(
        self,
        name: DeploymentName,
        signed: Supplied,
        chain: Supplied,
        out_dir: Path | None = None,
        *,
        force: bool = False,
    ) -> ImportResult:
        """The deployment CA certificate an enterprise CA signed: checked, then the
        component certificates issued under it and the package written."""
        store, key = self._open(create=False)
        record = store.get_deployment(name)
        _expect_pending(record, CaMode.ENTERPRISE_INTERMEDIATE, "import-ca")
        target = None
        if out_dir is not None:
            target = _check_target(out_dir, package.package_file_name(name), force=force)
        pending = record.pending[0]
        found = _certificates(signed, keys_refused=True)
        mine = [c for c in found if certificate_key_sha256(c) == pending.public_key_sha256]
        if not mine:
            raise FileProblem(
                signed.source,
                f"holds {_count(found)}, none for the pending key of deployment {name}'s CA",
            )
        ca_cert = mine[0]
        trust = Chain.of(_certificates(chain, keys_refused=True)).with_intermediates(
            c for c in found if c is not ca_cert
        )
        if not trust.anchors:
            raise FileProblem(chain.source, "holds no self-signed root CA to trust")
        now = self._now()
        check = check_signed_ca(
            ca_cert,
            pending.public_key_sha256,
            ca_subject(name, record.ccid, Organization(record.organization)),
            now,
            record.validity_days or COMPONENT_VALIDITY_DAYS,
        )
        if check.problems:
            raise ImportRefused(signed.source, check.problems)
        ca = CertificateAuthority(unseal_pending(pending, record.ccid, key), ca_cert)
        components = self._issue_all(ca, record, now, check.component_days)
        under_ca = Chain(trust.anchors, (ca_cert, *trust.intermediates))
        # every component certificate has the same chain: one check says it for all
        problem = chain_problem(components[0].certificate, under_ca, now, chain.source)
        if problem is not None:
            raise ImportRefused(signed.source, [f"certificates issued under it {problem}"])
        path = under_ca.path_of(components[0].certificate, now)
        material = _material(record, path, components)
        authority = authority_record(ca_cert, to_pkcs8_der(ca.key), record.ccid, key)
        certs = [certificate_record(item, record.hosts, record.ccid, key) for item in components]
        data = package.build(material)
        self._commit(
            store,
            target,
            data,
            force,
            lambda c: store.import_signed(
                c,
                name,
                authority=authority,
                trust=trust_records(material, record.ca_mode),
                certs=certs,
                resolved=[None],
            ),
        )
        view = to_view(store.get_deployment(name))
        return ImportResult(view, target, (None,), tuple(check.warnings), package=data)

    @_audited("deployment.import-signed", _first)
    def import_signed(
        self,
        name: DeploymentName,
        inputs: Sequence[Supplied],
        chain: Supplied,
        out_dir: Path | None = None,
        *,
        partial: bool = False,
        force: bool = False,
    ) -> ImportResult:
        """Component certificates an enterprise CA signed, in any order and form, matched to
        the pending keys. Every problem is listed and nothing is imported unless ``partial``
        (then the good ones are, and the rest stay pending). Once nothing is pending the
        package is written."""
        store, key = self._open(create=False)
        record = store.get_deployment(name)
        _expect_pending(record, CaMode.ENTERPRISE_LEAF, "import-signed")
        if out_dir is not None:
            check_writable_dir(out_dir)
        certs_in: list[tuple[str, x509.Certificate]] = []
        problems: list[str] = []
        for supplied in inputs:
            found, wrong = _signed_certificates(supplied)
            certs_in += found
            problems += wrong
        trust = Chain.of(_certificates(chain, keys_refused=True))
        now = self._now()
        pending = [
            PendingLeaf(p.component, p.public_key_sha256, tuple(record.hosts.get(p.component, ())))
            for p in record.pending
            if p.component is not None
        ]
        earlier = [x509.load_der_x509_certificate(c.cert_der) for c in record.certificates]
        match = match_leaves(certs_in, pending, record.ccid, trust, chain.source, now, earlier)
        trust = trust.with_intermediates(match.extra_intermediates)
        problems += match.problems
        good = list(match.good)
        if not good and not problems:
            problems.append("no certificate for any pending key was given")
        if problems and (not partial or not good):
            raise ImportRefused(f"deployment {name}", problems)
        by_component = {p.component: p for p in record.pending}
        fresh = [
            ComponentMaterial(
                item.component,
                item.certificate,
                to_pkcs8_der(unseal_pending(by_component[item.component], record.ccid, key)),
            )
            for item in good
        ]
        path = trust.path_of(fresh[0].certificate, now)
        complete = len(fresh) == len(pending)
        target = None
        if complete and out_dir is not None:  # a partial import writes no package
            target = _check_target(out_dir, package.package_file_name(name), force=force)
        data: bytes | None = None
        material = _material(record, path, fresh)
        if complete:
            before = unseal_components(record, earlier, key)
            order = {c: i for i, c in enumerate(Component)}
            everything = sorted((*before, *fresh), key=lambda c: order[c.component])
            material = _material(record, path, everything)
            data = package.build(material)
        certs = [certificate_record(item, record.hosts, record.ccid, key) for item in fresh]
        self._commit(
            store,
            target,
            data,
            force,
            lambda c: store.import_signed(
                c,
                name,
                authority=None,
                trust=trust_records(material, record.ca_mode),
                certs=certs,
                resolved=[item.component for item in fresh],
            ),
        )
        view = to_view(store.get_deployment(name))
        imported = tuple(item.component for item in fresh)
        return ImportResult(view, target, imported, problems=tuple(problems), package=data)

    def list_deployments(self) -> Sequence[DeploymentSummary]:
        """Every deployment (none for a fresh home). Needs no master key: nothing secret."""
        if never_created(self.settings):
            return []
        return self._open_store(create=False).list_deployments()

    def show_deployment(self, name: DeploymentName) -> DeploymentView:
        """One deployment's certificates (public data: needs no master key)."""
        return to_view(self._open_store(create=False).get_deployment(name))

    @_audited("certificate.sign-csr", lambda name, component, *_a, **_k: f"{name}/{component}")
    def sign_csr(
        self, name: DeploymentName, component: Component, csr_data: bytes, source: str
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
        store, key = self._open(create=False)
        record = store.signing_record(name, component)
        allowed = next((c.hosts for c in record.certificates if c.component is component), ())
        problems, hosts = csr_violations(csr, component, allowed)
        if problems:
            raise PolicyRefused(source, problems)
        ca = authority_of(record, key, store.location)
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
        )
        self._ok_written()
        return cert

    @_audited("package.download", _first)
    def package_bytes(self, name: DeploymentName) -> tuple[str, bytes]:
        """The package's file name and bytes, made again from the store (audited)."""
        return self._package_bytes(name)

    def _package_bytes(self, name: DeploymentName) -> tuple[str, bytes]:
        store, key = self._open(create=False)
        material = to_material(store.get_deployment(name), key, store.location)
        return material.file_name, package.build(material)

    def trust_bundle(self, name: DeploymentName) -> TrustBundle:
        """What another deployment needs to accept this one's identities (public data)."""
        record = self._open_store(create=False).get_deployment(name)
        if record.state is DeploymentState.PENDING or not record.certificates:
            raise InvalidInput(f"deployment {name} has no certificates yet to link to")
        anchors, _ = chain_of(record, self._open_store(create=False).location)
        leaves = [x509.load_der_x509_certificate(c.cert_der) for c in record.certificates]
        return TrustBundle(name, record.ccid, anchors, issuer_key_ids(leaves))

    def export_bundle(self, name: DeploymentName, out_dir: Path, *, force: bool) -> list[Path]:
        """``<name>_bundle.json`` (SPIFFE) and ``<name>_bundle.pem``: both or neither."""
        bundle = self.trust_bundle(name)
        check_writable_dir(out_dir)
        files = {
            out_dir / f"{name}_bundle.json": bundle.to_spiffe_json(),
            out_dir / f"{name}_bundle.pem": bundle.to_pem(),
        }
        for path in files:
            _check_target(out_dir, path.name, force=force)
        staged: list[StagedFile] = []
        try:
            for path, data in files.items():
                staged.append(StagedFile(path, data))
                staged[-1].place(replace=force)
        except BaseException:
            for item in reversed(staged):
                item.undo()
            raise
        for item in staged:
            item.finish()
        return list(files)

    @_audited("link.add", _first)
    def add_link(
        self, name: DeploymentName, bundle: TrustBundle, components: Collection[Component]
    ) -> tuple[DeploymentView, bool]:
        """``components`` of deployment ``name`` accept the bundle's deployment from its next
        package on; True when an existing link to it was replaced."""
        if not components:
            raise InvalidInput("name at least one component to accept the linked deployment")
        if Component.ESB_BROKER in components:
            raise InvalidInput(
                "the broker (esb_rabbit) cannot be linked: RabbitMQ checks only the chain, "
                "so it would accept every component of the linked deployment"
            )
        store = self._open_store(create=False)
        record = store.get_deployment(name)
        if bundle.ccid == record.ccid:
            raise InvalidInput(f"the bundle is deployment {name}'s own: nothing to link")
        order = list(Component)
        replaced = store.put_link(
            name,
            LinkRecord(
                ccid=bundle.ccid,
                name=bundle.name,
                bundle_pem=bundle.to_pem(),
                components=tuple(sorted(set(components), key=order.index)),
                created_at=self._now(),
            ),
        )
        return to_view(store.get_deployment(name)), replaced

    @_audited("link.remove", _first)
    def remove_link(self, name: DeploymentName, linked: str) -> DeploymentView:
        """Undo :meth:`add_link`; ``linked`` is the linked deployment's name or CCID."""
        store = self._open_store(create=False)
        if store.remove_link(name, linked) is None:
            raise InvalidInput(f"deployment {name} has no link to {linked!r}")
        return to_view(store.get_deployment(name))

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

    def pending_requests(self, name: DeploymentName) -> tuple[str, bytes]:
        """The CSR file (``<name>_ca.csr``) or zip (``<name>_csrs.zip``) a pending
        deployment waits on, made again from the store (public data)."""
        record = self._open_store(create=False).get_deployment(name)
        if record.state is not DeploymentState.PENDING:
            raise InvalidInput(f"deployment {name} has nothing pending to sign")
        csrs = [(p.component, x509.load_der_x509_csr(p.csr_der)) for p in record.pending]
        if record.ca_mode is CaMode.ENTERPRISE_INTERMEDIATE:
            return ca_csr_file_name(name), csr_pem(csrs[0][1])
        requests = [
            ComponentRequest(c, csr, tuple(record.hosts.get(c, ())))
            for c, csr in csrs
            if c is not None
        ]
        return csrs_file_name(name), build_csrs_zip(name, record.ccid, record.created_at, requests)

    def ca_certificates(self, name: DeploymentName) -> bytes:
        """The deployment's trust anchors, PEM (public)."""
        record = self._open_store(create=False).get_deployment(name)
        if record.state is DeploymentState.PENDING:
            raise InvalidInput(f"deployment {name} has no CA certificate yet")
        anchors, _ = chain_of(record, self._open_store(create=False).location)
        return certificates_pem(list(anchors))

    # -- credentials and the audit log ----------------------------------------------------

    @_audited("credential.create", lambda name, *_a, **_k: str(name))
    def create_token(
        self, name: str, role: Role, expires_in: dt.timedelta | None = None
    ) -> tuple[Credential, str]:
        """A new API token: the credential, and the token itself (shown once, not kept)."""
        made = new_token()
        now = self._now()
        credential = Credential(
            credential_id=made.credential_id,
            kind=CredentialKind.TOKEN,
            name=check_name(name),
            role=role,
            created_at=now,
            expires_at=now + expires_in if expires_in else None,
            revoked_at=None,
        )
        self._open_store(create=True).add_credential(credential, made.secret_sha256)
        return credential, made.token

    @_audited("credential.create", lambda name, *_a, **_k: str(name))
    def add_client_certificate(
        self, name: str, role: Role, cert: x509.Certificate, expires_in: dt.timedelta | None = None
    ) -> Credential:
        """A client certificate as a credential, known by its SHA-256 fingerprint."""
        now = self._now()
        credential = Credential(
            credential_id=secrets.token_hex(8),
            kind=CredentialKind.CLIENT_CERT,
            name=check_name(name),
            role=role,
            created_at=now,
            expires_at=now + expires_in if expires_in else None,
            revoked_at=None,
        )
        self._open_store(create=True).add_credential(credential, fingerprint(cert))
        return credential

    def credentials(self) -> list[Credential]:
        return self._open_store(create=False).list_credentials()

    @_audited("credential.revoke", lambda credential_id, *_a, **_k: str(credential_id))
    def revoke_credential(self, credential_id: str) -> Credential:
        revoked = self._open_store(create=False).revoke_credential(credential_id, self._now())
        if revoked is None:
            raise InvalidInput(f"no credential {credential_id!r} (or it is already revoked)")
        return revoked

    def authenticate_token(self, token: str) -> Credential:
        """The credential of a usable token; :class:`Unauthenticated` otherwise."""
        if parse_token(token) is None:
            raise Unauthenticated("not a certserver token")
        return self._usable(token_sha256(token))

    def authenticate_certificate(self, cert_fingerprint: str) -> Credential:
        return self._usable(cert_fingerprint)

    def _usable(self, digest: str) -> Credential:
        found = self._open_store(create=True).credential_by_digest(digest)
        if found is None or not same_digest(found[1], digest) or not found[0].usable(self._now()):
            raise Unauthenticated("unknown, expired or revoked credential")
        return found[0]

    def certificate_counts(self) -> dict[str, int]:
        if never_created(self.settings):
            return {}
        return self._open_store(create=False).certificate_counts()

    def audit_entries(self, *, limit: int = 100, offset: int = 0) -> list[AuditEntry]:
        if never_created(self.settings):
            return []
        return self._open_store(create=False).list_audit(limit=limit, offset=offset)

    def record(self, action: str, target: str, result: str, detail: str = "") -> None:
        """An audit entry for something refused before any use case ran (a credential
        without the role for it)."""
        self._open_store(create=True)
        self._audit(action, target, result, detail)

    # -- internals -------------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        return self.clock().astimezone(dt.UTC).replace(microsecond=0)

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

    def _commit(
        self,
        store: Store,
        target: Path | None,
        data: bytes | None,
        replace: bool,
        write: Callable[[Connection], object],
    ) -> None:
        """Rows and file together: ``write`` on a transaction, then the file placed before
        the commit; a failure of either leaves neither."""
        staged: StagedFile | None = None
        try:
            with store.transaction() as connection:
                write(connection)  # waits here if the store is busy
                entry = self._ok_entry()
                if entry is not None:  # committed with the change, or not at all
                    store.add_audit(entry, connection)
                if target is not None and data is not None:
                    staged = StagedFile(target, data)
                    staged.place(replace=replace)
        except BaseException:
            if staged is not None:
                staged.undo()
            raise
        self._ok_written()
        if staged is not None:
            staged.finish()

    def _issue_all(
        self, ca: CertificateAuthority, record: DeploymentRecord, now: dt.datetime, days: int
    ) -> list[ComponentMaterial]:
        """A new key and certificate under ``ca`` for every component of ``record``."""
        spec, org = record.key_spec, Organization(record.organization)
        issued = []
        for component in Component:
            component_key = spec.generate()
            cert = ca.issue(
                Identity(record.ccid, component),
                component_key.public_key(),
                spec,
                org,
                record.hosts.get(component, ()),
                now,
                days,
            )
            issued.append(ComponentMaterial(component, cert, to_pkcs8_der(component_key)))
        return issued

    def _mint(self, request: CreateRequest) -> tuple[DeploymentMaterial, bytes]:
        """The deployment's material and its CA key (PKCS#8 DER), all in memory."""
        now = self._now()
        ccid = Ccid.generate()
        spec = request.key_spec
        ca = CertificateAuthority.create(request.name, ccid, request.organization, spec, now)
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

    def _open_store(self, *, create: bool) -> Store:
        opened = self._opened
        with opened.lock:
            if opened.store is not None and (opened.writable or not create):
                return opened.store
            store = open_store(self.settings, create=create)
            if opened.store is not None:
                opened.store.close()
            opened.store, opened.writable = store, create
            return store

    def _open(self, *, create: bool) -> tuple[Store, MasterKey]:
        """The store and the master key that belongs to it; checks that they match."""
        store = self._open_store(create=create)
        opened = self._opened
        with opened.lock:
            if opened.key is None:
                opened.key = master_key_for(self.settings, store, create=create)
            return store, opened.key

    def _ok_entry(self) -> AuditEntry | None:
        """The ``ok`` entry of the audited call in progress, to write on the transaction of
        its change (one commit for both; a change is never without its entry). None when
        no audited call is in progress or its entry is written."""
        call = _CALL.get(None)
        if call is None or call.written:
            return None
        return self._entry(call.action, call.target, OK, "")

    def _ok_written(self) -> None:
        """The change and its ``ok`` entry (from :meth:`_ok_entry`) are committed."""
        call = _CALL.get(None)
        if call is not None:
            call.written = True

    def _entry(self, action: str, target: str, result: str, detail: str) -> AuditEntry:
        return AuditEntry(
            self._now(), self.actor.name, action, target, self.actor.source, result, detail
        )

    def _audit(self, action: str, target: str, result: str, detail: str) -> None:
        store = self._opened.store
        if store is None:  # the store could not be opened: nothing to write to
            return
        entry = self._entry(action, target, result, detail)
        try:
            store.add_audit(entry)
        except StoreError:
            if result == OK:
                raise


def _check_target(out_dir: Path, file_name: str, *, force: bool) -> Path:
    target = out_dir / file_name
    check_writable_dir(out_dir)
    if target.is_dir():
        raise FileProblem(target, "is a directory")
    if os.path.lexists(target) and not force:
        raise TargetExists(target, "already exists (use --force to replace it)")
    return target


def _expect_pending(record: DeploymentRecord, mode: CaMode, command: str) -> None:
    if record.ca_mode is not mode:
        raise InvalidInput(
            f"deployment {record.name} was created with --ca {record.ca_mode}; "
            f"{command} is for --ca {mode}"
        )
    if record.state is not DeploymentState.PENDING:
        raise InvalidInput(f"deployment {record.name} has nothing pending to import")


def _certificates(supplied: Supplied, *, keys_refused: bool = False) -> list[x509.Certificate]:
    """The certificates in a file the user gave; FileProblem when there are none (or, with
    ``keys_refused``, when it also holds a private key, which has no business there)."""
    try:
        found = parse(supplied.data)
    except ParseError as exc:
        raise FileProblem(supplied.source, str(exc)) from None
    if keys_refused and (found.private_keys or found.encrypted_keys):
        raise FileProblem(supplied.source, "holds a private key; give certificates only")
    if not found.certificates:
        raise FileProblem(supplied.source, f"holds {found.describe()}, expected certificates")
    return found.certificates


def _signed_certificates(
    supplied: Supplied,
) -> tuple[list[tuple[str, x509.Certificate]], list[str]]:
    """Every certificate in a file or a zip of files, each with where it came from, and the
    problems of the parts that hold none."""
    parts = [(supplied.source, supplied.data)]
    if is_zip(supplied.data):
        members = read_members(supplied.data, supplied.source)
        parts = [(f"{supplied.source}:{path}", m.data) for path, m in sorted(members.items())]
    found: list[tuple[str, x509.Certificate]] = []
    problems: list[str] = []
    for source, data in parts:
        try:
            parsed = parse(data)
        except ParseError as exc:
            problems.append(f"{source}: {exc}")
            continue
        if parsed.private_keys or parsed.encrypted_keys:
            problems.append(f"{source}: holds a private key; give the signed certificates only")
        elif not parsed.certificates:
            problems.append(f"{source}: holds {parsed.describe()}, expected certificates")
        found += [(source, cert) for cert in parsed.certificates]
    return found, problems


def _count(certs: Sequence[x509.Certificate]) -> str:
    return "1 certificate" if len(certs) == 1 else f"{len(certs)} certificates"


def _material(
    record: DeploymentRecord,
    path: Sequence[x509.Certificate],
    components: Sequence[ComponentMaterial],
) -> DeploymentMaterial:
    """A package's material from a verified path (issuer first, the anchor last)."""
    return DeploymentMaterial(
        name=record.name,
        ccid=record.ccid,
        organization=record.organization,
        created_at=record.created_at,
        anchors=(path[-1],),
        intermediates=tuple(path[:-1]),
        components=tuple(components),
        package_version=record.package_version,
        ca_mode=record.ca_mode,
    )
