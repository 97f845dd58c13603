"""Enterprise CAs in the loop: CSRs out, signed certificates in, with real third-party CAs
(the openssl CLI and cfssl), and the identity proven to have survived the signing."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certserver.errors import PeerRefused, RefusalReason
from certserver.identity import Ccid, Component, DeploymentName, Identity
from certserver.mtls import ComponentCredentials
from certserver.pem import parse
from certserver.profiles import CaMode
from certserver.service import CertServer, CreateRequest, Supplied
from certserver.store import DeploymentState

from .conftest import LOOPBACK_HOSTS, Cli, extract, run_openssl, snapshot
from .enterprise_tools import CA_EXTENSIONS, Cfssl, OpensslCA, new_csr
from .tls_tools import handshake

CCM, CCO = Component.CCM, Component.CCO
INTERMEDIATE, LEAF = CaMode.ENTERPRISE_INTERMEDIATE.value, CaMode.ENTERPRISE_LEAF.value
#: What a component CSR asks for, copied by a CA that honours it.
LEAF_COPY = "copyall"


def _create(run: Cli, out: Path, name: str, mode: str) -> Path:
    done = run(
        "deployment", "create", name, "--ca", mode,
        "--host", "all=localhost,127.0.0.1", "--out", str(out),
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    return out / (f"{name}_ca.csr" if mode == INTERMEDIATE else f"{name}_csrs.zip")


def _show(run: Cli, name: str) -> dict[str, object]:
    done = run("deployment", "show", name, "--json")
    assert done.exit_code == 0, done.output
    shown: dict[str, object] = json.loads(done.output)
    return shown


def _csrs(zip_path: Path, into: Path) -> dict[Component, Path]:
    extract(zip_path, into)
    return {component: into / f"{component.folder}.csr" for component in Component}


def _ccid(run: Cli, name: str) -> Ccid:
    return Ccid(str(_show(run, name)["ccid"]))


def _certs(path: Path) -> list[x509.Certificate]:
    return parse(path.read_bytes()).certificates


def _subjects(path: Path) -> list[str]:
    return [cert.subject.rfc4514_string() for cert in _certs(path)]


def _talk(package: Path, into: Path) -> tuple[object, str | None, str | None, object]:
    """A real mutual TLS handshake between the package's CCM (server) and CCO (client)."""
    root = extract(package, into)
    server = ComponentCredentials.from_folder(root / CCM.folder)
    client = ComponentCredentials.from_folder(root / CCO.folder)
    return handshake(server, client)


def _refused(run: Cli, *args: str) -> str:
    done = run(*args)
    assert done.exit_code == 1, done.output
    assert "Traceback" not in done.output
    lines = done.output.strip().splitlines()
    assert lines and lines[-1].startswith("certserver: error: "), done.output
    return lines[-1]


# -- the deployment CA signed as an intermediate --------------------------------------------


def test_the_ca_csr_asks_for_a_deployment_ca_and_the_deployment_waits(
    run: Cli, out_dir: Path
) -> None:
    csr_path = _create(run, out_dir, "acme", INTERMEDIATE)
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    ccid = _ccid(run, "acme")
    assert csr.is_signature_valid
    units = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    assert ccid.value in units and "deployment CA" in units
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "acme"
    constraints = csr.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = csr.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    shown = _show(run, "acme")
    assert shown["state"] == "pending" and shown["pending"] == [None]
    assert sorted(p.name for p in out_dir.iterdir()) == ["acme_ca.csr"]
    line = _refused(run, "deployment", "export", "acme", "--out", str(out_dir))
    assert "waiting for its enterprise-signed CA" in line and "import-ca" in line


def test_an_intermediate_signed_under_a_two_level_enterprise_ca_works_end_to_end(
    run: Cli, out_dir: Path, tmp_path: Path
) -> None:
    root = OpensslCA.root(tmp_path / "corp")
    issuing = root.subordinate(tmp_path / "corp", "Example Issuing CA", pathlen=1)
    csr = _create(run, out_dir, "acme", INTERMEDIATE)
    signed = issuing.sign(csr, tmp_path / "acme_ca.crt", *CA_EXTENSIONS, days=1000)
    # the chain as enterprises hand it out: root first, repeated, issuing CA in between
    chain = issuing.chain(tmp_path / "bundle.pem", scrambled=True)
    done = run(
        "deployment", "import-ca", "acme", "--cert", str(signed), "--chain", str(chain),
        "--out", str(out_dir),
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    package = out_dir / "acme_certs.zip"
    x = extract(package, tmp_path / "x")
    ccm = x / CCM.folder
    assert _subjects(ccm / "ca.crt") == ["CN=Example Root CA,O=Example Corp"]
    assert [c.subject for c in _certs(ccm / "chain.crt")] == [
        _certs(signed)[0].subject,
        _certs(issuing.cert)[0].subject,
    ]
    assert len(_certs(x / "esb_rabbit" / "ca_certificate.pem")) == 3  # chain, then the root
    run_openssl(
        "verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", str(ccm / "ca.crt"),
        "-untrusted", str(ccm / "chain.crt"), str(ccm / CCM.cert_file),
    )  # fmt: skip
    checked, server_error, client_error, seen = _talk(package, tmp_path / "talk")
    ccid = _ccid(run, "acme")
    assert server_error is None and client_error is None
    assert checked == Identity(ccid, CCO) and seen == Identity(ccid, CCM)
    assert _show(run, "acme")["state"] == "ready"
    again = tmp_path / "again"
    again.mkdir()
    assert run("deployment", "export", "acme", "--out", str(again)).exit_code == 0
    assert (again / "acme_certs.zip").read_bytes() == package.read_bytes()
    # and the deployment CA signs a host-made CSR, which verifies to the enterprise root
    signed_here = tmp_path / "host.crt"
    host_csr = new_csr(tmp_path, "host")
    done = run("sign-csr", "acme", "--component", "cco", str(host_csr), "--out", str(signed_here))
    assert done.exit_code == 0, done.output
    run_openssl(
        "verify", "-purpose", "sslclient", "-CAfile", str(ccm / "ca.crt"),
        "-untrusted", str(ccm / "chain.crt"), str(signed_here),
    )  # fmt: skip


def test_an_intermediate_signed_by_cfssl_works_and_its_changed_subject_is_reported(
    run: Cli, out_dir: Path, tmp_path: Path
) -> None:
    cfssl = Cfssl.root(tmp_path / "cfssl")
    csr = _create(run, out_dir, "acme", INTERMEDIATE)
    signed = cfssl.sign(csr, tmp_path / "acme_ca.pem", "intermediate")
    done = run(
        "deployment", "import-ca", "acme", "--cert", str(signed), "--chain", str(cfssl.cert),
        "--out", str(out_dir),
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "warning: the enterprise CA changed the subject" in done.output
    checked, server_error, client_error, _ = _talk(out_dir / "acme_certs.zip", tmp_path / "x")
    assert server_error is None and client_error is None
    assert checked == Identity(_ccid(run, "acme"), CCO)


def test_a_ca_that_expires_first_caps_the_component_certificates_with_a_warning(
    run: Cli, out_dir: Path, tmp_path: Path
) -> None:
    root = OpensslCA.root(tmp_path / "corp")
    csr = _create(run, out_dir, "acme", INTERMEDIATE)
    signed = root.sign(csr, tmp_path / "acme_ca.crt", *CA_EXTENSIONS, days=100)
    done = run(
        "deployment", "import-ca", "acme", "--cert", str(signed), "--chain", str(root.cert),
        "--out", str(out_dir),
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert re.search(r"capped at (99|100) days \(asked for 730\)", done.output), done.output
    ca_end = _certs(signed)[0].not_valid_after_utc
    for component in _show(run, "acme")["components"]:  # type: ignore[attr-defined]
        assert component["not_after"] <= ca_end.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong key", "none for the pending key"),
        ("not a CA", "is not a CA certificate"),
        ("no keyCertSign", "lacks keyUsage keyCertSign"),
        ("chain without its intermediate", "does not verify to the roots"),
        ("enterprise CA allows no CA below it", "does not verify to the roots"),
        ("chain without a root", "holds no self-signed root CA"),
        ("no subjectKeyIdentifier", "has no subjectKeyIdentifier"),
        ("no authorityKeyIdentifier", "has no authorityKeyIdentifier"),
        ("wrong root, full chain in --cert", "does not verify to the roots"),
    ],
)
def test_a_wrongly_signed_intermediate_is_refused_and_nothing_changes(
    run: Cli, out_dir: Path, tmp_path: Path, home: Path, case: str, expected: str
) -> None:
    root = OpensslCA.root(tmp_path / "corp")
    issuing = root.subordinate(tmp_path / "corp", "Issuing", pathlen=1)
    csr = _create(run, out_dir, "acme", INTERMEDIATE)
    signer, extensions, chain = issuing, list(CA_EXTENSIONS), issuing.chain(tmp_path / "c.pem")
    if case == "wrong key":
        csr = new_csr(tmp_path, "stranger")
    elif case == "not a CA":
        extensions[0] = "basicConstraints=critical,CA:FALSE"
    elif case == "no keyCertSign":
        extensions[1] = "keyUsage=critical,digitalSignature,cRLSign"
    elif case == "chain without its intermediate":
        chain = root.cert
    elif case == "enterprise CA allows no CA below it":
        signer = root.subordinate(tmp_path / "corp", "Leaf-only Issuing", pathlen=0)
        chain = signer.chain(tmp_path / "c.pem")
    elif case == "chain without a root":
        chain = issuing.chain(tmp_path / "c.pem", with_root=False)
    elif case == "no subjectKeyIdentifier":
        extensions[2] = "subjectKeyIdentifier=none"
    elif case == "no authorityKeyIdentifier":
        extensions[3] = "authorityKeyIdentifier=none"
    elif case == "wrong root, full chain in --cert":
        chain = OpensslCA.root(tmp_path / "elsewhere", "Another Root").cert
    signed = signer.sign(csr, tmp_path / "signed.crt", *extensions)
    if case == "wrong root, full chain in --cert":  # its own root there is not trusted
        signed.write_bytes(signed.read_bytes() + issuing.chain(tmp_path / "full.pem").read_bytes())
    before = snapshot(out_dir, home)
    line = _refused(
        run, "deployment", "import-ca", "acme", "--cert", str(signed), "--chain", str(chain),
        "--out", str(out_dir),
    )  # fmt: skip
    assert expected in line
    assert str(signed) in line or str(chain) in line
    assert "<Certificate" not in line and line.count(expected) == 1
    assert snapshot(out_dir, home) == before
    assert _show(run, "acme")["state"] == "pending"


def test_after_a_refusal_the_right_certificate_still_imports(
    run: Cli, out_dir: Path, tmp_path: Path
) -> None:
    root = OpensslCA.root(tmp_path / "corp")
    csr = _create(run, out_dir, "acme", INTERMEDIATE)
    wrong = root.sign(csr, tmp_path / "wrong.crt", "basicConstraints=critical,CA:FALSE")
    args = ["--chain", str(root.cert), "--out", str(out_dir)]
    _refused(run, "deployment", "import-ca", "acme", "--cert", str(wrong), *args)
    right = root.sign(csr, tmp_path / "right.crt", *CA_EXTENSIONS)
    assert run("deployment", "import-ca", "acme", "--cert", str(right), *args).exit_code == 0
    line = _refused(run, "deployment", "import-ca", "acme", "--cert", str(right), *args)
    assert "nothing pending" in line


# -- each component signed by the enterprise ------------------------------------------------


def test_component_csrs_carry_the_whole_identity(run: Cli, out_dir: Path, tmp_path: Path) -> None:
    csrs = _csrs(_create(run, out_dir, "beta", LEAF), tmp_path / "csrs")
    ccid = _ccid(run, "beta")
    manifest = json.loads((tmp_path / "csrs" / "manifest.json").read_text())
    assert manifest["ccid"] == ccid.value
    assert sorted(row["component"] for row in manifest["csrs"]) == sorted(
        c.folder for c in Component
    )
    for component, path in csrs.items():
        csr = x509.load_pem_x509_csr(path.read_bytes())
        assert csr.is_signature_valid
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
            Identity(ccid, component).spiffe_id
        ]
        assert san.get_values_for_type(x509.DNSName) == ["localhost"]
        units = csr.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        assert [a.value for a in units] == [ccid.value]
        eku = csr.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        assert csr.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    shown = _show(run, "beta")
    assert shown["state"] == "pending" and len(shown["pending"]) == len(Component)  # type: ignore[arg-type]


def _sign_all(
    ca: OpensslCA,
    csrs: dict[Component, Path],
    folder: Path,
    *extensions: str,
    copy: str = LEAF_COPY,
) -> dict[Component, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {
        c: ca.sign(csr, folder / f"{c.folder}.crt", *extensions, copy=copy)
        for c, csr in csrs.items()
    }


def test_component_certificates_in_every_form_and_order_make_a_working_package(
    run: Cli, out_dir: Path, tmp_path: Path
) -> None:
    root = OpensslCA.root(tmp_path / "corp")
    issuing = root.subordinate(tmp_path / "corp", "Example Issuing CA", pathlen=0)
    csrs = _csrs(_create(run, out_dir, "beta", LEAF), tmp_path / "csrs")
    signed = _sign_all(issuing, csrs, tmp_path / "signed")
    # DER; a PEM bundle with CRLF line ends and the issuing CA; PKCS#7; a zip of the rest
    der = tmp_path / "ccm.der"
    run_openssl("x509", "-in", str(signed[CCM]), "-outform", "DER", "-out", str(der))
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(
        (
            signed[Component.MONITOR].read_bytes()
            + issuing.cert.read_bytes()
            + signed[CCO].read_bytes()
        ).replace(b"\n", b"\r\n")
    )
    p7b = tmp_path / "gua.p7b"
    run_openssl("crl2pkcs7", "-nocrl", "-certfile", str(signed[Component.GUA]), "-out", str(p7b))
    archive = tmp_path / "rest.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for component in (Component.ESB, Component.ESB_BROKER):
            handle.write(signed[component], f"out/{component.folder}.cer")
    done = run(
        "deployment", "import-signed", "beta", str(archive), str(p7b), str(bundle), str(der),
        "--chain", str(root.cert), "--out", str(out_dir),
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    package = out_dir / "beta_certs.zip"
    x = extract(package, tmp_path / "x")
    assert _subjects(x / CCM.folder / "ca.crt") == ["CN=Example Root CA,O=Example Corp"]
    assert _subjects(x / CCM.folder / "chain.crt") == ["CN=Example Issuing CA,O=Example Corp"]
    manifest = json.loads((x / "manifest.json").read_text())
    assert manifest["ca_mode"] == LEAF
    ccm = x / CCM.folder
    run_openssl(
        "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", str(ccm / "ca.crt"),
        "-untrusted", str(ccm / "chain.crt"), str(ccm / CCM.cert_file),
    )  # fmt: skip
    checked, server_error, client_error, seen = _talk(package, tmp_path / "talk")
    ccid = _ccid(run, "beta")
    assert server_error is None and client_error is None
    assert checked == Identity(ccid, CCO) and seen == Identity(ccid, CCM)
    shown = _show(run, "beta")
    assert shown["state"] == "ready" and shown["pending"] == []


def test_cfssl_drops_the_uri_san_and_every_certificate_is_refused(
    run: Cli, out_dir: Path, tmp_path: Path, home: Path
) -> None:
    cfssl = Cfssl.root(tmp_path / "cfssl")
    csrs = _csrs(_create(run, out_dir, "beta", LEAF), tmp_path / "csrs")
    signed = [cfssl.sign(csr, tmp_path / f"{c.folder}.pem", "leaf") for c, csr in csrs.items()]
    before = snapshot(out_dir, home)
    line = _refused(
        run, "deployment", "import-signed", "beta", *map(str, signed),
        "--chain", str(cfssl.cert), "--out", str(out_dir),
    )  # fmt: skip
    assert f"refused ({len(Component)} problems, nothing imported)" in line
    for component in Component:
        assert f"{component.folder}: lost the identity" in line
    assert snapshot(out_dir, home) == before
    assert len(_show(run, "beta")["pending"]) == len(Component)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("drops clientAuth", "lacks extendedKeyUsage clientAuth"),
        ("drops the OU", "lost the subject's OU="),
        ("signed as a CA", "is signed as a CA"),
        ("chain without its intermediate", "does not verify to the roots"),
        ("a key that is not pending", "matches no pending key"),
    ],
)
def test_a_component_certificate_that_lost_something_is_refused(
    run: Cli, out_dir: Path, tmp_path: Path, home: Path, case: str, expected: str
) -> None:
    root = OpensslCA.root(tmp_path / "corp")
    issuing = root.subordinate(tmp_path / "corp", "Issuing", pathlen=0)
    csrs = _csrs(_create(run, out_dir, "beta", LEAF), tmp_path / "csrs")
    chain = issuing.chain(tmp_path / "chain.pem")
    extensions: list[str] = []
    copy = LEAF_COPY
    if case == "drops clientAuth":
        extensions, copy = ["extendedKeyUsage=serverAuth"], "copy"
    elif case == "signed as a CA":
        extensions, copy = ["basicConstraints=critical,CA:TRUE"], "copy"
    elif case == "chain without its intermediate":
        chain = root.cert
    elif case == "a key that is not pending":
        csrs[CCM] = new_csr(tmp_path, "stranger")
    signed = _sign_all(issuing, csrs, tmp_path / "signed", *extensions, copy=copy)
    if case == "drops the OU":  # a CA that sets its own subject
        signed[CCM] = issuing.sign(
            csrs[CCM], tmp_path / "signed" / "ccm.crt", copy=LEAF_COPY, subject="/O=Corp/CN=ccm"
        )
    before = snapshot(out_dir, home)
    line = _refused(
        run, "deployment", "import-signed", "beta", *map(str, signed.values()),
        "--chain", str(chain), "--out", str(out_dir),
    )  # fmt: skip
    assert expected in line and "nothing imported" in line
    assert snapshot(out_dir, home) == before
    assert len(_show(run, "beta")["pending"]) == len(Component)  # type: ignore[arg-type]


def test_partial_imports_the_good_ones_and_the_rest_later(
    run: Cli, out_dir: Path, tmp_path: Path
) -> None:
    root = OpensslCA.root(tmp_path / "corp")
    csrs = _csrs(_create(run, out_dir, "beta", LEAF), tmp_path / "csrs")
    good = _sign_all(root, csrs, tmp_path / "good")
    bad = root.sign(csrs[CCO], tmp_path / "bad.crt", "extendedKeyUsage=serverAuth", copy="copy")
    first = [str(good[CCM]), str(bad)]
    args = ["--chain", str(root.cert), "--out", str(out_dir)]
    _refused(run, "deployment", "import-signed", "beta", *first, *args)
    assert len(_show(run, "beta")["pending"]) == len(Component)  # type: ignore[arg-type]
    done = run("deployment", "import-signed", "beta", *first, *args, "--partial")
    assert done.exit_code == 0, done.output
    assert "left pending" in done.output and "lacks extendedKeyUsage clientAuth" in done.output
    assert "Still pending: cco" in done.output
    assert not (out_dir / "beta_certs.zip").exists()
    shown = _show(run, "beta")
    assert CCM.folder not in shown["pending"] and CCO.folder in shown["pending"]  # type: ignore[operator]
    # the rest, given together with what was imported before (passed over)
    done = run("deployment", "import-signed", "beta", *map(str, good.values()), *args)
    assert done.exit_code == 0, done.output
    checked, server_error, client_error, _ = _talk(out_dir / "beta_certs.zip", tmp_path / "x")
    assert server_error is None and client_error is None
    assert checked == Identity(_ccid(run, "beta"), CCO)


def test_two_deployments_under_one_enterprise_root_refuse_each_other(
    run: Cli, out_dir: Path, tmp_path: Path
) -> None:
    root = OpensslCA.root(tmp_path / "corp")
    for name in ("north", "south"):
        csrs = _csrs(_create(run, out_dir, name, LEAF), tmp_path / f"csrs-{name}")
        signed = _sign_all(root, csrs, tmp_path / f"signed-{name}")
        done = run(
            "deployment", "import-signed", name, *map(str, signed.values()),
            "--chain", str(root.cert), "--out", str(out_dir),
        )  # fmt: skip
        assert done.exit_code == 0, done.output
    north = extract(out_dir / "north_certs.zip", tmp_path / "north")
    south = extract(out_dir / "south_certs.zip", tmp_path / "south")
    server = ComponentCredentials.from_folder(north / CCM.folder)
    own = ComponentCredentials.from_folder(north / CCO.folder)
    foreign = ComponentCredentials.from_folder(south / CCO.folder)
    checked, server_error, client_error, _ = handshake(server, own)
    assert server_error is None and client_error is None
    assert checked == Identity(_ccid(run, "north"), CCO)
    # the same root signed both, so the chain verifies: only the CCID check tells them apart
    checked, server_error, client_error, _ = handshake(server, foreign)
    assert server_error is None and client_error is None
    assert isinstance(checked, PeerRefused)
    assert checked.reason is RefusalReason.OTHER_DEPLOYMENT


def test_commands_of_the_wrong_kind_are_refused(run: Cli, out_dir: Path, tmp_path: Path) -> None:
    root = OpensslCA.root(tmp_path / "corp")
    _create(run, out_dir, "leafy", LEAF)
    assert run("deployment", "create", "own", "--out", str(out_dir)).exit_code == 0
    ca_csr = _create(run, out_dir, "inter", INTERMEDIATE)
    signed = root.sign(ca_csr, tmp_path / "inter.crt", *CA_EXTENSIONS)
    args = ["--chain", str(root.cert), "--out", str(out_dir)]
    line = _refused(run, "deployment", "import-ca", "own", "--cert", str(signed), *args)
    assert "created with --ca certserver" in line
    line = _refused(run, "deployment", "import-signed", "inter", str(signed), *args)
    assert "import-signed is for --ca enterprise-leaf" in line
    line = _refused(run, "sign-csr", "leafy", "--component", "ccm", str(new_csr(tmp_path, "x")))
    assert "certserver holds no CA key for it" in line
    line = _refused(
        run, "deployment", "import-signed", "leafy", str(tmp_path / "missing.pem"), *args
    )
    assert "missing.pem: no such file" in line
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    line = _refused(run, "deployment", "import-signed", "leafy", str(empty), *args)
    assert "empty.pem: is empty" in line


def test_both_flows_on_either_store(settings: object, tmp_path: Path) -> None:
    """The service API on SQLite and on PostgreSQL: pending rows, import, the same bytes."""
    from certserver.config import Settings

    assert isinstance(settings, Settings)
    root = OpensslCA.root(tmp_path / "corp")
    out = tmp_path / "out"
    out.mkdir()
    with CertServer(settings) as service:
        for name, mode in (
            ("inter", CaMode.ENTERPRISE_INTERMEDIATE),
            ("leafy", CaMode.ENTERPRISE_LEAF),
        ):
            service.create_deployment(
                CreateRequest(
                    name=DeploymentName(name),
                    out_dir=out,
                    hosts=dict.fromkeys(Component, LOOPBACK_HOSTS),
                    ca_mode=mode,
                )
            )
        assert {s.name.value: s.state for s in service.list_deployments()} == {
            "inter": DeploymentState.PENDING,
            "leafy": DeploymentState.PENDING,
        }
        signed = root.sign(out / "inter_ca.csr", tmp_path / "inter.crt", *CA_EXTENSIONS, days=1000)
        chain = Supplied(str(root.cert), root.cert.read_bytes())
        result = service.import_ca(
            DeploymentName("inter"), Supplied(str(signed), signed.read_bytes()), chain, out
        )
        assert result.package_path == out / "inter_certs.zip" and result.warnings == ()
        csrs = _csrs(out / "leafy_csrs.zip", tmp_path / "csrs")
        certs = _sign_all(root, csrs, tmp_path / "signed")
        result = service.import_signed(
            DeploymentName("leafy"),
            [Supplied(str(path), path.read_bytes()) for path in certs.values()],
            chain,
            out,
        )
        assert result.package_path == out / "leafy_certs.zip"
        for name in ("inter", "leafy"):
            assert service.show_deployment(DeploymentName(name)).state is DeploymentState.READY
            file_name, data = service.package_bytes(DeploymentName(name))
            assert data == (out / file_name).read_bytes()


def test_capping_holds_when_the_import_comes_later(settings: object, tmp_path: Path) -> None:
    """The cap is whole days that fit before the CA's end, however late the import runs."""
    import datetime as dt

    from certserver.config import Settings

    assert isinstance(settings, Settings)
    root = OpensslCA.root(tmp_path / "corp")
    out = tmp_path / "out"
    out.mkdir()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=5)
    with CertServer(settings) as service:
        service.create_deployment(
            CreateRequest(
                name=DeploymentName("late"), out_dir=out, ca_mode=CaMode.ENTERPRISE_INTERMEDIATE
            )
        )
    signed = root.sign(out / "late_ca.csr", tmp_path / "late.crt", *CA_EXTENSIONS, days=100)
    with CertServer(settings, clock=lambda: later) as service:
        result = service.import_ca(
            DeploymentName("late"),
            Supplied(str(signed), signed.read_bytes()),
            Supplied(str(root.cert), root.cert.read_bytes()),
            out,
        )
        assert any("capped at 99 days" in warning for warning in result.warnings)
        ca_end = _certs(signed)[0].not_valid_after_utc
        assert all(c.not_after <= ca_end for c in result.deployment.components)


def test_a_dropped_path_length_is_reported(run: Cli, out_dir: Path, tmp_path: Path) -> None:
    root = OpensslCA.root(tmp_path / "corp")
    csr = _create(run, out_dir, "acme", INTERMEDIATE)
    extensions = ["basicConstraints=critical,CA:TRUE", *CA_EXTENSIONS[1:]]
    signed = root.sign(csr, tmp_path / "acme_ca.crt", *extensions, days=1000)
    done = run(
        "deployment", "import-ca", "acme", "--cert", str(signed), "--chain", str(root.cert),
        "--out", str(out_dir),
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "did not keep pathLen 0" in done.output


def test_two_issuing_cas_of_one_name_are_not_mixed_in_a_package(
    run: Cli, out_dir: Path, tmp_path: Path
) -> None:
    root = OpensslCA.root(tmp_path / "corp")
    first = root.subordinate(tmp_path / "one", "Issuing CA", pathlen=0)
    namesake = root.subordinate(tmp_path / "two", "Issuing CA", pathlen=0)  # another key
    csrs = _csrs(_create(run, out_dir, "beta", LEAF), tmp_path / "csrs")
    signed = _sign_all(first, csrs, tmp_path / "signed")
    signed[CCO] = namesake.sign(csrs[CCO], tmp_path / "cco-namesake.crt", copy=LEAF_COPY)
    chain = tmp_path / "chain.pem"
    chain.write_bytes(root.cert.read_bytes() + first.cert.read_bytes() + namesake.cert.read_bytes())
    args = ["--chain", str(chain), "--out", str(out_dir)]
    line = _refused(run, "deployment", "import-signed", "beta", *map(str, signed.values()), *args)
    assert "more than one issuing CA" in line
    # the same, one component at a time: the second issuer is refused against the first
    assert run("deployment", "import-signed", "beta", str(signed[CCM]), *args).exit_code == 0
    line = _refused(run, "deployment", "import-signed", "beta", str(signed[CCO]), *args)
    assert "more than one issuing CA" in line
    assert not (out_dir / "beta_certs.zip").exists()


def test_a_certificate_with_an_unsupported_key_is_a_one_line_refusal(
    run: Cli, out_dir: Path, tmp_path: Path
) -> None:
    key, cert = tmp_path / "sm2.key", tmp_path / "sm2.crt"
    run_openssl("ecparam", "-name", "SM2", "-genkey", "-noout", "-out", str(key))
    run_openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(key),
        "-out",
        str(cert),
        "-days",
        "3",
        "-subj",
        "/CN=sm2",
    )
    root = OpensslCA.root(tmp_path / "corp")
    _create(run, out_dir, "beta", LEAF)
    _create(run, out_dir, "acme", INTERMEDIATE)
    args = ["--chain", str(root.cert), "--out", str(out_dir)]
    line = _refused(run, "deployment", "import-signed", "beta", str(cert), *args)
    assert "key algorithm certserver does not support" in line
    line = _refused(run, "deployment", "import-ca", "acme", "--cert", str(cert), *args)
    assert "none for the pending key" in line


def test_a_partial_import_is_not_stopped_by_an_old_zip(
    run: Cli, out_dir: Path, tmp_path: Path
) -> None:
    root = OpensslCA.root(tmp_path / "corp")
    csrs = _csrs(_create(run, out_dir, "beta", LEAF), tmp_path / "csrs")
    signed = _sign_all(root, csrs, tmp_path / "signed")
    old = out_dir / "beta_certs.zip"
    old.write_bytes(b"an old package")
    args = ["--chain", str(root.cert), "--out", str(out_dir)]
    assert run("deployment", "import-signed", "beta", str(signed[CCM]), *args).exit_code == 0
    rest = [str(p) for c, p in signed.items() if c is not CCM]
    line = _refused(run, "deployment", "import-signed", "beta", *rest, *args)
    assert "already exists" in line and old.read_bytes() == b"an old package"
    assert run("deployment", "import-signed", "beta", *rest, *args, "--force").exit_code == 0
    assert zipfile.is_zipfile(old)
