"""One extension of a certificate (or CSR), or None when it is absent or does not parse."""

from __future__ import annotations

from typing import TypeVar

from cryptography import x509

_T = TypeVar("_T", bound=x509.ExtensionType)


def extension_of(
    item: x509.Certificate | x509.CertificateSigningRequest, kind: type[_T]
) -> _T | None:
    try:
        return item.extensions.get_extension_for_class(kind).value
    except (x509.ExtensionNotFound, ValueError, x509.DuplicateExtension):
        return None
