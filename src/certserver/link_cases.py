"""The federation use cases: a deployment's trust bundle out, links to others in."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from cryptography import x509

from certserver.errors import (
    InvalidInput,
)
from certserver.federation import TrustBundle, issuer_key_ids
from certserver.files import check_writable_dir, place_all
from certserver.identity import Component, DeploymentName
from certserver.records import (
    DeploymentView,
    chain_of,
    to_view,
)
from certserver.store import (
    DeploymentState,
    LinkRecord,
)
from certserver.usecases import UseCases
from certserver.usecases import audited as _audited
from certserver.usecases import check_target as _check_target
from certserver.usecases import first_arg as _first


class LinkCases(UseCases):
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
        place_all(files, replace=force)
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
