"""Third-party CAs for the enterprise-CA flows: the openssl CLI and cfssl, run for real."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from .conftest import need_tool, run_openssl, run_process

#: What an enterprise CA adds to a CA it signs (an intermediate).
CA_EXTENSIONS = (
    "basicConstraints=critical,CA:TRUE,pathlen:0",
    "keyUsage=critical,keyCertSign,cRLSign",
    "subjectKeyIdentifier=hash",
    "authorityKeyIdentifier=keyid",
)


@dataclass(frozen=True)
class OpensslCA:
    """An enterprise CA kept as files and run with ``openssl x509 -req``."""

    cert: Path
    key: Path
    parent: OpensslCA | None = None

    @classmethod
    def root(cls, folder: Path, name: str = "Example Root CA") -> OpensslCA:
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = folder / "root.crt", folder / "root.key"
        run_openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "3650",
            "-subj", f"/O=Example Corp/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        return cls(cert, key)

    def subordinate(self, folder: Path, name: str, *, pathlen: int = 1) -> OpensslCA:
        """An issuing CA under this one."""
        folder.mkdir(parents=True, exist_ok=True)
        key, csr = folder / f"{name}.key", folder / f"{name}.csr"
        run_openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/O=Example Corp/CN={name}",
        )  # fmt: skip
        extensions = [line.replace("pathlen:0", f"pathlen:{pathlen}") for line in CA_EXTENSIONS]
        cert = self.sign(csr, folder / f"{name}.crt", *extensions)
        return OpensslCA(cert, key, self)

    def sign(
        self,
        csr: Path,
        out: Path,
        *extensions: str,
        days: int = 365,
        copy: str | None = None,
        subject: str | None = None,
    ) -> Path:
        """``openssl x509 -req``: ``extensions`` from an extfile, ``copy`` the CSR's
        (``copy``: those the extfile does not set; ``copyall``: every one), and ``subject``
        in place of the CSR's, as CAs that set their own subjects do."""
        args = [
            "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-set_serial", str(secrets.randbits(63)), "-days", str(days), "-out", str(out),
        ]  # fmt: skip
        if extensions:
            extfile = out.with_suffix(".ext")
            extfile.write_text("\n".join(extensions) + "\n")
            args += ["-extfile", str(extfile)]
        if copy:
            args += ["-copy_extensions", copy]
        if subject:
            args += ["-subj", subject]
        run_openssl(*args)
        return out

    def chain(self, out: Path, *, with_root: bool = True, scrambled: bool = False) -> Path:
        """This CA and the ones above it, as one PEM file (root last, or first if scrambled)."""
        certs = []
        ca: OpensslCA | None = self
        while ca is not None:
            if ca.parent is not None or with_root:
                certs.append(ca.cert.read_bytes())
            ca = ca.parent
        if scrambled:
            certs = [*reversed(certs), certs[-1]]  # root first, and twice
        out.write_bytes(b"".join(certs))
        return out


def new_csr(folder: Path, name: str) -> Path:
    """A CSR for a key certserver never made."""
    csr = folder / f"{name}.csr"
    run_openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(folder / f"{name}.key"), "-out", str(csr), "-subj", f"/CN={name}",
    )  # fmt: skip
    return csr


_CFSSL_PROFILES = {
    "leaf": {"expiry": "8760h", "usages": ["digital signature", "server auth", "client auth"]},
    "intermediate": {
        "expiry": "43800h",
        "usages": ["cert sign", "crl sign"],
        "ca_constraint": {"is_ca": True, "max_path_len": 0, "max_path_len_zero": True},
    },
}


@dataclass(frozen=True)
class Cfssl:
    """CloudFlare's cfssl (Debian's golang-cfssl) as an enterprise CA."""

    folder: Path

    @classmethod
    def root(cls, folder: Path) -> Cfssl:
        folder.mkdir(parents=True, exist_ok=True)
        request = {"CN": "cfssl Root CA", "key": {"algo": "ecdsa", "size": 256}}
        (folder / "root.json").write_text(json.dumps(request))
        done = run_process(need_tool("cfssl"), "gencert", "-initca", str(folder / "root.json"))
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        (folder / "root.pem").write_text(answer["cert"])
        (folder / "root-key.pem").write_text(answer["key"])
        profiles = {"signing": {"default": {"expiry": "8760h"}, "profiles": _CFSSL_PROFILES}}
        (folder / "config.json").write_text(json.dumps(profiles))
        return cls(folder)

    @property
    def cert(self) -> Path:
        return self.folder / "root.pem"

    def sign(self, csr: Path, out: Path, profile: str) -> Path:
        done = run_process(
            need_tool("cfssl"), "sign",
            "-ca", str(self.cert), "-ca-key", str(self.folder / "root-key.pem"),
            "-config", str(self.folder / "config.json"), "-profile", profile, str(csr),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        out.write_text(json.loads(done.stdout)["cert"])
        return out
