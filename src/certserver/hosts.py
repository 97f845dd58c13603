"""Host names and IP addresses that go into a certificate's subjectAltName."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509

from certserver.errors import InvalidInput
from certserver.identity import Component

#: Host names one component's certificate may carry (a certificate, not a phone book).
MAX_HOSTS = 100

_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True, slots=True, order=True)
class Host:
    """A DNS name (lowercase, no wildcard) or an IP address, validated once."""

    text: str
    is_ip: bool

    @classmethod
    def parse(cls, raw: str) -> Host:
        text = raw.strip()
        if not text:
            raise InvalidInput("empty host name")
        candidate = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        if "%" in candidate:
            raise InvalidInput(f"invalid host {raw!r}: scoped IPv6 addresses are not allowed")
        try:
            address = ipaddress.ip_address(candidate)
        except ValueError:
            pass
        else:
            if address.is_unspecified:
                raise InvalidInput(f"invalid host {raw!r}: the unspecified address names no host")
            return cls(str(address), True)
        if not text.isascii():
            raise InvalidInput(
                f"invalid host {raw!r}: use the ASCII (xn--) form of international names"
            )
        name = text.lower().removesuffix(".")
        if "*" in name:
            raise InvalidInput(f"invalid host {raw!r}: wildcards are not allowed")
        labels = name.split(".")
        if len(name) > 253 or not all(_LABEL_RE.fullmatch(label) for label in labels):
            raise InvalidInput(f"invalid host {raw!r}: not a DNS name or an IP address")
        if labels[-1].isdigit():
            raise InvalidInput(f"invalid host {raw!r}: not a valid IP address")
        return cls(name, False)

    def general_name(self) -> x509.GeneralName:
        if self.is_ip:
            return x509.IPAddress(ipaddress.ip_address(self.text))
        return x509.DNSName(self.text)

    def __str__(self) -> str:
        return self.text


def merge_hosts(
    pairs: Iterable[tuple[str, Sequence[Host]]],
) -> dict[Component, tuple[Host, ...]]:
    """Hosts per component from ``(target, hosts)`` pairs, where the target is a component
    or ``all``; repeats kept once, in order, at most :data:`MAX_HOSTS` per component."""
    merged: dict[Component, dict[Host, None]] = {}
    for target, hosts in pairs:
        components = (
            list(Component) if target.strip().lower() == "all" else [Component.parse(target)]
        )
        for component in components:
            bucket = merged.setdefault(component, {})
            bucket.update(dict.fromkeys(hosts))
            if len(bucket) > MAX_HOSTS:
                raise InvalidInput(
                    f"too many hosts for {component}: at most {MAX_HOSTS} names per certificate"
                )
    return {component: tuple(hosts) for component, hosts in merged.items()}


def hosts_in(cert: x509.Certificate) -> tuple[Host, ...]:
    """The DNS and IP names in a certificate's subjectAltName."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    names = [str(v) for v in san.get_values_for_type(x509.DNSName)]
    names += [str(v) for v in san.get_values_for_type(x509.IPAddress)]
    return tuple(Host.parse(name) for name in names)
