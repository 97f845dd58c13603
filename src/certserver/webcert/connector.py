"""What a Tomcat HTTPS connector's TLS attributes should be: data, no file handling.

Tomcat 8.5 and later configure TLS in ``SSLHostConfig`` / ``Certificate``; the older
attributes on the ``Connector`` itself are no longer read by Tomcat 10.1 (it logs "failed
to set property" and the connector fails for want of an SSLHostConfig), so a connector that
uses them is moved over: the certificate ones are replaced by ours, the others renamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lxml import etree

DEFAULT_PORT = "8443"
JSSE = "org.apache.tomcat.util.net.jsse.JSSEImplementation"

# SSLHostConfig / Certificate attributes (Tomcat 8.5 and later)
PEM_ATTRS = ("certificateFile", "certificateKeyFile", "certificateChainFile")
KEYSTORE_ATTRS = (
    "certificateKeystoreFile",
    "certificateKeystorePassword",
    "certificateKeystoreType",
    "certificateKeyAlias",
)
KEY_PASSWORD = ("certificateKeyPassword", "certificateKeystoreProvider")
# the older TLS attributes on the Connector: the certificate ones (replaced by ours) ...
OLDER_CERTIFICATE_ATTRS = (
    "SSLCertificateFile",
    "SSLCertificateKeyFile",
    "SSLCertificateChainFile",
    "SSLPassword",
    "keystoreFile",
    "keystorePass",
    "keystoreType",
    "keystoreProvider",
    "keyAlias",
    "keyPass",
)
# ... and the others, with their SSLHostConfig names
OLDER_HOST_ATTRS = {
    "sslProtocol": "sslProtocol",
    "sslEnabledProtocols": "protocols",
    "SSLProtocol": "protocols",
    "ciphers": "ciphers",
    "SSLCipherSuite": "ciphers",
    "clientAuth": "certificateVerification",
    "SSLVerifyClient": "certificateVerification",
    "SSLVerifyDepth": "certificateVerificationDepth",
    "trustMaxCertLength": "certificateVerificationDepth",
    "truststoreFile": "truststoreFile",
    "truststorePass": "truststorePassword",
    "truststoreType": "truststoreType",
    "truststoreProvider": "truststoreProvider",
    "truststoreAlgorithm": "truststoreAlgorithm",
    "SSLCACertificateFile": "caCertificateFile",
    "SSLCACertificatePath": "caCertificatePath",
    "crlFile": "certificateRevocationListFile",
    "SSLCARevocationFile": "certificateRevocationListFile",
    "SSLHonorCipherOrder": "honorCipherOrder",
    "useServerCipherSuitesOrder": "honorCipherOrder",
    "sessionCacheSize": "sessionCacheSize",
    "sessionTimeout": "sessionTimeout",
}
VERIFICATION = {
    "true": "required",
    "yes": "required",
    "require": "required",
    "want": "optional",
    "false": "none",
    "no": "none",
}
DEFAULT_HOST = {"protocols": "TLSv1.2+TLSv1.3"}


@dataclass(frozen=True)
class PemFiles:
    certificate: Path
    key: Path
    chain: Path | None
    key_type: str  # "EC" or "RSA": Tomcat's Certificate type


@dataclass(frozen=True)
class KeystoreFile:
    keystore: Path
    password: str
    alias: str
    key_type: str


Target = PemFiles | KeystoreFile


def certificate_values(target: Target) -> tuple[dict[str, str], tuple[str, ...]]:
    if isinstance(target, PemFiles):
        values = {"certificateFile": str(target.certificate), "certificateKeyFile": str(target.key)}
        remove: tuple[str, ...] = KEYSTORE_ATTRS + KEY_PASSWORD
        if target.chain is not None:
            values["certificateChainFile"] = str(target.chain)
        else:
            remove += ("certificateChainFile",)
    else:
        values = {
            "certificateKeystoreFile": str(target.keystore),
            "certificateKeystorePassword": target.password,
            "certificateKeystoreType": "PKCS12",
            "certificateKeyAlias": target.alias,
        }
        remove = PEM_ATTRS + KEY_PASSWORD
    values["type"] = target.key_type
    return values, remove


def moved_host_attributes(connector: etree._Element) -> dict[str, str]:
    moved: dict[str, str] = {}
    for old, new in OLDER_HOST_ATTRS.items():
        value = connector.get(old)
        if value is None or new in moved:
            continue
        if new == "certificateVerification":
            value = VERIFICATION.get(value.strip().lower(), value)
        moved[new] = value
    return moved


def connector_attributes(port: str) -> dict[str, str]:
    return {
        "port": port,
        "protocol": "org.apache.coyote.http11.Http11NioProtocol",
        "SSLEnabled": "true",
        "scheme": "https",
        "secure": "true",
        "maxParameterCount": "1000",
        "sslImplementationName": JSSE,
    }
