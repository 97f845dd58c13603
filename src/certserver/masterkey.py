"""The master key that seals private keys at rest (AES-256-GCM, bound to each key's owner)."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from certserver.errors import FileProblem, MasterKeyError, TargetExists
from certserver.files import StagedFile, read_regular_file

_HEADER = b"certserver-master-key-v1\n"
_BLOB_VERSION = b"\x01"
_NONCE_SIZE = 12


@dataclass(frozen=True)
class MasterKey:
    """A 256-bit key; ``key_id`` names it without revealing it, so a store refuses a wrong one."""

    secret: bytes = field(repr=False)
    source: Path | None = None

    def __post_init__(self) -> None:
        if len(self.secret) != 32:
            raise MasterKeyError("master key must be 32 bytes")

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"certserver master key id\x00" + self.secret).hexdigest()[:16]

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(32))

    @classmethod
    def create(cls, path: Path) -> MasterKey:
        """Write a new key to ``path`` (mode 0600 from the start); refuses an existing file."""
        key = cls.generate()
        staged = StagedFile(path, _HEADER + base64.b64encode(key.secret) + b"\n")
        try:
            staged.place(replace=False)  # whole or not at all, even for a reader racing us
        except TargetExists:
            staged.undo()
            # a master key is never replaced: the stores sealed with it would not open
            raise TargetExists(path, "already exists (a master key is never replaced)") from None
        except BaseException:
            staged.undo()
            raise
        staged.finish()
        return cls(key.secret, path)

    @classmethod
    def load(cls, path: Path) -> MasterKey:
        try:
            info = path.stat()
        except FileNotFoundError:
            raise MasterKeyError(f"{path}: master key file is missing") from None
        except OSError as exc:
            raise MasterKeyError(f"{path}: cannot read master key: {exc.strerror}") from None
        if not stat.S_ISREG(info.st_mode):
            raise MasterKeyError(f"{path}: master key is not a regular file")
        if info.st_mode & 0o077:
            raise MasterKeyError(
                f"{path}: master key is readable by group or others "
                f"(mode {info.st_mode & 0o777:04o}); chmod 600 it"
            )
        try:
            data = read_regular_file(path, 4096, "a master key")
        except FileProblem as exc:
            raise MasterKeyError(f"{path}: cannot read master key: {exc.problem}") from None
        if not data.startswith(_HEADER):
            raise MasterKeyError(f"{path}: not a certserver master key file")
        try:
            secret = base64.b64decode(data[len(_HEADER) :].strip(), validate=True)
        except ValueError:
            raise MasterKeyError(f"{path}: master key file is damaged") from None
        if len(secret) != 32:
            raise MasterKeyError(f"{path}: master key file is damaged")
        return cls(secret, path)

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        """Encrypt ``plaintext``; ``context`` (e.g. the owner's identity) must match to unseal."""
        nonce = os.urandom(_NONCE_SIZE)
        sealed = AESGCM(self.secret).encrypt(nonce, plaintext, _BLOB_VERSION + context)
        return _BLOB_VERSION + nonce + sealed

    def unseal(self, blob: bytes, context: bytes) -> bytes:
        if blob[:1] != _BLOB_VERSION or len(blob) < 1 + _NONCE_SIZE + 16:
            raise MasterKeyError("sealed key is damaged or has an unknown format")
        nonce, ciphertext = blob[1 : 1 + _NONCE_SIZE], blob[1 + _NONCE_SIZE :]
        try:
            return AESGCM(self.secret).decrypt(nonce, ciphertext, _BLOB_VERSION + context)
        except InvalidTag:
            where = f" ({self.source})" if self.source else ""
            raise MasterKeyError(
                f"master key{where} cannot open a sealed private key: wrong key or damaged store"
            ) from None
