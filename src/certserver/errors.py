"""The one exception tree.

Every domain error has a human ``message`` (one line, never a secret) and a stable ``code``
that scripts and the API can rely on. The CLI turns them into one line on stderr and a
non-zero exit; nothing else in the package prints them.
"""

from __future__ import annotations

import enum
from pathlib import Path


class CertserverError(Exception):
    """Base of every error certserver raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(CertserverError):
    """A value given by a user (name, host, option) is not acceptable."""

    code = "invalid-input"


class FileProblem(CertserverError):
    """A file the user named cannot be read, parsed or written."""

    code = "file-problem"

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


class TargetExists(FileProblem):
    code = "target-exists"


class DeploymentExists(CertserverError):
    code = "deployment-exists"


class DeploymentNotFound(CertserverError):
    code = "deployment-not-found"


class StoreError(CertserverError):
    """The store is missing, locked, corrupt or unreachable."""

    code = "store-error"


class StoreMissing(StoreError):
    code = "store-missing"


class StoreLocked(StoreError):
    code = "store-locked"


class StoreCorrupt(StoreError):
    code = "store-corrupt"


class MasterKeyError(CertserverError):
    """The master key is missing, unreadable, too open, or not the one the store was made with."""

    code = "master-key"


class IdentityError(CertserverError):
    """A certificate carries no valid deployment identity."""

    code = "no-identity"


class RefusalReason(enum.StrEnum):
    """Why a peer was refused after its handshake (equal to its string, for scripts)."""

    NO_CERTIFICATE = "no-certificate"
    UNVERIFIED = "unverified"
    NO_IDENTITY = "no-identity"
    OTHER_DEPLOYMENT = "other-deployment"
    COMPONENT_NOT_ALLOWED = "component-not-allowed"
    # the handshake itself failed on the peer's certificate
    UNKNOWN_CA = "unknown-ca"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    REVOKED = "revoked"
    CRL_PROBLEM = "crl-problem"  # the configured CRL is missing for the issuer, or expired
    REFUSED_BY_PEER = "refused-by-peer"  # the peer's alert: it refused this side
    HANDSHAKE_FAILED = "handshake-failed"  # anything else: protocol version, bad signature


class PeerRefused(CertserverError):
    """A TLS peer completed the handshake but is not allowed here."""

    code = "peer-refused"

    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class InstallRefused(CertserverError):
    """The package, or what is installed, does not allow this install. Lists every reason."""

    code = "install-refused"

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: refused: " + "; ".join(problems))
        self.problems = problems


class InstallFailed(CertserverError):
    """A step of an install failed; what was installed before is in place."""

    code = "install-failed"


class PolicyRefused(CertserverError):
    """A CSR asks for something the signing policy does not allow. Lists every reason."""

    code = "policy-refused"

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: refused: " + "; ".join(problems))
        self.problems = problems


class ImportRefused(CertserverError):
    """What an enterprise CA signed cannot be imported. Lists every reason; imports nothing."""

    code = "import-refused"

    def __init__(self, source: str, problems: list[str]) -> None:
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{source}: refused ({count}, nothing imported): " + "; ".join(problems))
        self.problems = problems
