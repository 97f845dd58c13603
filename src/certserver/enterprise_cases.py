"""The enterprise-CA use cases: import what an enterprise CA signed, and give out again the
CSRs a pending deployment waits on."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from certserver import package
from certserver.archive import is_zip, read_members
from certserver.authority import CertificateAuthority
from certserver.csr import (
    ComponentRequest,
    build_csrs_zip,
    ca_csr_file_name,
    csr_pem,
    csrs_file_name,
)
from certserver.enterprise import Chain, PendingLeaf, chain_problem, check_signed_ca, match_leaves
from certserver.errors import (
    FileProblem,
    ImportRefused,
    InvalidInput,
)
from certserver.files import check_writable_dir
from certserver.identity import Component, DeploymentName, Identity
from certserver.keys import (
    certificate_key_sha256,
    to_pkcs8_der,
)
from certserver.package import ComponentMaterial, DeploymentMaterial
from certserver.pem import ParseError, parse
from certserver.profiles import (
    COMPONENT_VALIDITY_DAYS,
    CaMode,
    Organization,
    ca_subject,
)
from certserver.records import (
    DeploymentView,
    authority_record,
    certificate_record,
    to_view,
    trust_records,
    unseal_components,
    unseal_pending,
)
from certserver.store import (
    AuthorityRecord,
    CertificateRecord,
    DeploymentRecord,
    DeploymentState,
    Store,
)
from certserver.usecases import UseCases
from certserver.usecases import audited as _audited
from certserver.usecases import check_target as _check_target
from certserver.usecases import first_arg as _first


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


class EnterpriseCases(UseCases):
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
        ca = self._publishing(
            CertificateAuthority(unseal_pending(pending, record.ccid, key), ca_cert), name
        )
        components = self._issue_all(ca, record, now, check.component_days)
        under_ca = Chain(trust.anchors, (ca_cert, *trust.intermediates))
        # every component certificate has the same chain: one check says it for all
        problem = chain_problem(components[0].certificate, under_ca, now, chain.source)
        if problem is not None:
            raise ImportRefused(signed.source, [f"the certificates issued under it: {problem}"])
        path = under_ca.path_of(components[0].certificate, now)
        material = _material(record, path, components)
        authority = authority_record(ca_cert, to_pkcs8_der(ca.key), record.ccid, key)
        certs = [certificate_record(item, record.hosts, record.ccid, key) for item in components]
        data = package.build(material)
        self._finish_import(
            store,
            record,
            material,
            target,
            data,
            force=force,
            authority=authority,
            certs=certs,
            resolved=[None],
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
        self._finish_import(
            store,
            record,
            material,
            target,
            data,
            force=force,
            authority=None,
            certs=certs,
            resolved=[item.component for item in fresh],
        )
        view = to_view(store.get_deployment(name))
        imported = tuple(item.component for item in fresh)
        return ImportResult(view, target, imported, problems=tuple(problems), package=data)

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

    def _finish_import(
        self,
        store: Store,
        record: DeploymentRecord,
        material: DeploymentMaterial,
        target: Path | None,
        data: bytes | None,
        *,
        force: bool,
        authority: AuthorityRecord | None,
        certs: Sequence[CertificateRecord],
        resolved: Sequence[Component | None],
    ) -> None:
        """The imported rows and (once complete) the package, together."""
        self._commit(
            store,
            target,
            data,
            force,
            lambda c: store.import_signed(
                c,
                record.name,
                authority=authority,
                trust=trust_records(material, record.ca_mode),
                certs=certs,
                resolved=resolved,
            ),
        )

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
