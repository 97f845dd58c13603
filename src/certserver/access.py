"""Which components may call which: the per-service access policy of mutual TLS.

The default: the management server (CCM) accepts CCO, GUA, Monitor and ESB; the broker
accepts every component of its deployment; every other component accepts CCM. A policy
file (TOML) replaces the entries it names::

    [accept]
    ccm = ["cco", "gua"]         # CCM accepts only CCO and GUA
    mon = ["ccm", "cco"]
    esb_rabbit = ["*"]           # every component
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from certserver.errors import CertserverError, FileProblem
from certserver.files import read_regular_file
from certserver.identity import Component

ALL = "*"
_MAX_POLICY = 64 << 10

_DEFAULT: Mapping[Component, frozenset[Component]] = MappingProxyType(
    {
        Component.CCM: frozenset({Component.CCO, Component.GUA, Component.MONITOR, Component.ESB}),
        Component.ESB_BROKER: frozenset(Component),
    }
)


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """For each service (a component acting as server), the components it accepts."""

    accepts: Mapping[Component, frozenset[Component]] = field(default_factory=lambda: _DEFAULT)

    def allowed_for(self, service: Component) -> frozenset[Component]:
        return self.accepts.get(service, frozenset({Component.CCM}))

    def replacing(self, service: Component, callers: Iterable[Component]) -> AccessPolicy:
        """This policy with ``service`` accepting exactly ``callers``."""
        return AccessPolicy(MappingProxyType({**self.accepts, service: frozenset(callers)}))

    @classmethod
    def default(cls) -> AccessPolicy:
        return cls()

    @classmethod
    def from_file(cls, path: Path) -> AccessPolicy:
        """The default with the services that ``path`` (TOML, ``[accept]``) names replaced."""
        try:
            data = tomllib.loads(read_regular_file(path, _MAX_POLICY, "a policy").decode())
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise FileProblem(path, f"not a TOML policy ({exc})") from None
        accept = data.get("accept")
        unknown = sorted(set(data) - {"accept"})
        if unknown:
            raise FileProblem(path, f"unknown section {unknown[0]!r} (only [accept])")
        if not isinstance(accept, dict):
            raise FileProblem(path, "has no [accept] table")
        policy = cls()
        for service_name, callers in accept.items():
            try:
                service = Component.from_folder(service_name)
                if not isinstance(callers, list) or not all(isinstance(c, str) for c in callers):
                    raise FileProblem(path, f"accept.{service_name} must be a list of components")
                named = frozenset(Component.from_folder(c) for c in callers if c != ALL)
                members = frozenset(Component) if ALL in callers else named
            except FileProblem:
                raise
            except CertserverError as exc:
                raise FileProblem(path, exc.message) from None
            policy = policy.replacing(service, members)
        return policy
