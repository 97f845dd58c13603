"""Self-renewal on a component host against a running service, over mutual TLS."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cryptography import x509

from certserver.mtls import identity_of

from .conftest import Cli, certserver_script, env_for, extract, run_process
from .test_serve import serving


def _cert(folder: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((folder / name).read_bytes())


def test_a_component_renews_itself_and_a_revoked_one_is_refused(
    run: Cli, home: Path, out_dir: Path, tmp_path: Path
) -> None:
    made = run(
        "deployment",
        "create",
        "selfish",
        "--host",
        "all=localhost,127.0.0.1",
        "--out",
        str(out_dir),
    )
    assert made.exit_code == 0, made.output
    x = extract(out_dir / "selfish_certs.zip", tmp_path / "x")
    assert run("revoke", "selfish", "--component", "gua").exit_code == 0
    host_env = env_for(tmp_path / "host-home")  # the component host has no store of its own
    with serving(home) as (port, _process):
        url = f"https://127.0.0.1:{port}"
        pin = str(home / "serve" / "server.crt")
        cco = x / "cco"
        stolen = tmp_path / "stolen"
        shutil.copytree(cco, stolen)  # a copy of the current files, as a thief would keep
        (cco / "gateway.key").chmod(0o600)
        os.chown(cco / "gateway.key", 65534, 65534)  # the component runs as its own user
        os.chown(cco / "gateway.crt", 65534, 65534)
        (cco / "gateway.crt").chmod(0o640)
        old_cert, old_key = _cert(cco, "gateway.crt"), (cco / "gateway.key").read_bytes()

        def renew(folder: Path, *extra: str) -> object:
            return run_process(
                certserver_script(), "renew", "--server", url, "--component-dir", str(folder),
                "--server-ca", pin, *extra, env=host_env, timeout=60,
            )  # fmt: skip

        not_due = renew(cco)
        assert not_due.returncode == 0 and "Not due" in not_due.stdout
        assert _cert(cco, "gateway.crt") == old_cert
        marker = tmp_path / "restarted"
        done = renew(cco, "--before", "800d", "--restart", f"touch {marker}")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Renewed" in done.stdout and marker.exists()
        new_cert = _cert(cco, "gateway.crt")
        assert identity_of(new_cert) == identity_of(old_cert)
        assert new_cert.serial_number != old_cert.serial_number
        assert (cco / "gateway.key").read_bytes() != old_key
        assert (cco / "gateway.key").stat().st_mode & 0o777 == 0o600
        for name, mode in (("gateway.key", 0o600), ("gateway.crt", 0o640)):  # as they were
            info = (cco / name).stat()
            assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (65534, 65534, mode)
        assert (
            new_cert.public_key()
            == x509.load_pem_x509_certificate((cco / "gateway.crt").read_bytes()).public_key()
        )
        again = renew(cco, "--before", "800d")  # the renewed certificate is a credential too
        assert again.returncode == 0, again.stdout + again.stderr
        thief = renew(stolen, "--before", "800d")  # the replaced one is not, any more
        assert thief.returncode == 1 and "superseded, not current" in thief.stderr
        assert _cert(stolen, "gateway.crt") == old_cert
        refused = renew(x / "gua", "--before", "800d")
        assert refused.returncode == 1
        assert "renewal refused (403)" in refused.stderr and "revoked" in refused.stderr
        unpinned = run_process(
            certserver_script(), "renew", "--server", url, "--component-dir", str(x / "mon"),
            "--before", "800d", env=host_env, timeout=60,
        )  # fmt: skip
        assert unpinned.returncode == 1 and "certificate does not verify" in unpinned.stderr
    audit = run("audit", "--json").output
    import json

    entries = [e for e in json.loads(audit) if e["action"] == "certificate.self-renew"]
    results = sorted(e["result"] for e in entries)
    assert results.count("ok") == 2 and "forbidden" in results  # refusals are audited too
    assert all(e["actor"].startswith("component:spiffe://") for e in entries)
    openssl_ok = run_process(
        "openssl", "verify", "-CAfile", str(x / "cco" / "ca.crt"), str(cco / "gateway.crt")
    )
    assert openssl_ok.returncode == 0
