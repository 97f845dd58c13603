"""certserver: a deployment certificate server.

Per deployment it makes a unique identifier (the CCID), a CA of the deployment's own and a
certificate for every component that carries the identity, so components authenticate each
other with mutual TLS and refuse anyone from another deployment.
"""

from certserver.authority import CertificateAuthority
from certserver.config import Settings
from certserver.errors import CertserverError, PeerRefused, RefusalReason
from certserver.hosts import Host
from certserver.identity import Ccid, Component, DeploymentName, Identity
from certserver.keys import KeySpec
from certserver.mtls import ComponentCredentials, PeerCheck, identity_of
from certserver.profiles import Organization
from certserver.service import CertServer, CreateRequest

__all__ = [
    "Ccid",
    "CertServer",
    "CertificateAuthority",
    "CertserverError",
    "Component",
    "ComponentCredentials",
    "CreateRequest",
    "DeploymentName",
    "Host",
    "Identity",
    "KeySpec",
    "Organization",
    "PeerCheck",
    "PeerRefused",
    "RefusalReason",
    "Settings",
    "identity_of",
]
