"""Deployment identity: names, CCIDs, the closed set of components, SPIFFE IDs.

Strings from users become these typed values once, at the edge; nothing deeper in the
package spells a component or a CCID as a bare string.
"""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass

from certserver.errors import IdentityError, InvalidInput

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True, slots=True)
class DeploymentName:
    """A deployment's unique name: a slug of 1 to 63 characters."""

    value: str

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.value):
            raise InvalidInput(
                f"invalid deployment name {self.value!r}: use 1-63 lowercase letters, digits "
                "and '-', starting with a letter or digit"
            )

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Ccid:
    """The deployment identifier: a lowercase UUID version 4, made by certserver only."""

    value: str

    def __post_init__(self) -> None:
        try:
            parsed = uuid.UUID(self.value)
        except ValueError:
            raise IdentityError(f"invalid CCID {self.value!r}: not a UUID") from None
        if parsed.version != 4 or str(parsed) != self.value:
            raise IdentityError(f"invalid CCID {self.value!r}: not a lowercase UUID version 4")

    @classmethod
    def generate(cls) -> Ccid:
        return cls(str(uuid.uuid4()))

    def __str__(self) -> str:
        return self.value


class Component(enum.Enum):
    """The closed set of platform components (DESIGN.md §3.1).

    ``folder`` is the zip folder and the SPIFFE path; ``file_base`` names the files.
    """

    CCM = ("ccm", "mgmtserver", "management server (Tomcat)")
    CCO = ("cco", "gateway", "orchestrator")
    MONITOR = ("mon", "monitor", "monitoring")
    GUA = ("gua", "gua", "remote-desktop gateway (Guacamole)")
    ESB = ("esb", "esb", "message-bus client identity")
    ESB_BROKER = ("esb_rabbit", "server", "RabbitMQ broker")

    def __init__(self, folder: str, file_base: str, description: str) -> None:
        self.folder = folder
        self.file_base = file_base
        self.description = description

    @classmethod
    def parse(cls, text: str) -> Component:
        wanted = text.strip().lower()
        for component in cls:
            if wanted in (component.folder, component.name.lower()):
                return component
        names = ", ".join(c.folder for c in cls)
        raise InvalidInput(f"unknown component {text!r}: expected one of {names}")

    @classmethod
    def from_folder(cls, folder: str) -> Component:
        for component in cls:
            if component.folder == folder:
                return component
        raise IdentityError(f"unknown component {folder!r}")

    @property
    def is_broker(self) -> bool:
        return self is Component.ESB_BROKER

    @property
    def cert_file(self) -> str:
        """The leaf certificate's file name inside the component folder."""
        return "server_certificate.pem" if self.is_broker else f"{self.file_base}.crt"

    @property
    def key_file(self) -> str:
        return "server_key.pem" if self.is_broker else f"{self.file_base}.key"

    @property
    def ca_file(self) -> str:
        """Trust anchors (for the broker: intermediates and anchors, as Erlang wants)."""
        return "ca_certificate.pem" if self.is_broker else "ca.crt"

    @property
    def chain_file(self) -> str | None:
        """Intermediates, where the chain has any; the broker keeps them in ``ca_file``."""
        return None if self.is_broker else "chain.crt"

    @property
    def links_file(self) -> str | None:
        """The linked deployments this component accepts (federation); the broker has none."""
        return None if self.is_broker else "links.json"

    @property
    def file_names(self) -> frozenset[str]:
        """Every file the component's folder may hold."""
        names = (self.cert_file, self.key_file, self.ca_file, self.chain_file, self.links_file)
        return frozenset(name for name in names if name)

    @property
    def installed_with(self) -> tuple[Component, ...]:
        """The sets one install of this component puts in place (esb brings its broker)."""
        return (self, Component.ESB_BROKER) if self is Component.ESB else (self,)

    def __str__(self) -> str:
        return self.folder


SPIFFE_SCHEME = "spiffe://"


@dataclass(frozen=True, slots=True)
class Identity:
    """(CCID, component): what every component certificate carries."""

    ccid: Ccid
    component: Component

    @property
    def spiffe_id(self) -> str:
        return f"{SPIFFE_SCHEME}{self.ccid}/{self.component.folder}"

    @classmethod
    def from_spiffe_id(cls, uri: str) -> Identity:
        if not uri.startswith(SPIFFE_SCHEME):
            raise IdentityError(f"not a SPIFFE ID: {uri!r}")
        trust_domain, sep, path = uri[len(SPIFFE_SCHEME) :].partition("/")
        if not sep or "/" in path or not path:
            raise IdentityError(f"SPIFFE ID {uri!r} is not spiffe://<ccid>/<component>")
        return cls(Ccid(trust_domain), Component.from_folder(path))

    def __str__(self) -> str:
        return self.spiffe_id
