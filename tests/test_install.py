"""``certserver install``: every component into a --prefix tree, atomically, with rollback."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest

from certserver.archive import open_package
from certserver.clock import utc_now
from certserver.errors import CertserverError, InstallFailed
from certserver.identity import Component
from certserver.install.apply import apply
from certserver.install.owners import broker_owner
from certserver.install.paths import HostPaths
from certserver.install.plan import INSTALLABLE, plan_install

from .conftest import Cli, Extracted, need, need_tool, run_process
from .install_tools import rewrite_package, tree

SSL = Path("usr/local/osmosix/ssl")
LINK = Path("usr/local/tomcat/conf/ssl")
BROKER = Path("etc/rabbitmq/certs")


def _install(run: Cli, package: Path, component: str, prefix: Path, *extra: str):  # type: ignore[no-untyped-def]
    return run("install", str(package), "--component", component, "--prefix", str(prefix), *extra)


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


def _rabbitmq() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("rabbitmq")
    except KeyError:
        need(False, "user rabbitmq does not exist (install rabbitmq-server)")
        raise


@pytest.mark.parametrize("component", INSTALLABLE, ids=lambda c: c.folder)
def test_each_component_installs_with_paths_owners_modes_and_link(
    run: Cli, alpha: Extracted, prefix: Path, component: Component
) -> None:
    need(os.geteuid() == 0, "owners are set only as root")
    result = _install(run, alpha.result.package_path, component.folder, prefix)
    assert result.exit_code == 0, result.stderr
    folder = prefix / SSL / component.folder
    info = folder.lstat()
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
    assert (info.st_uid, info.st_gid) == (0, 0)
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([component.cert_file, component.key_file, "ca.crt"])
    for name in names:
        file_info = (folder / name).lstat()
        assert stat.S_IMODE(file_info.st_mode) == 0o600 and file_info.st_uid == 0
        assert (folder / name).read_bytes() == (alpha.folder(component) / name).read_bytes()
    link = prefix / LINK
    assert link.is_symlink() and link.resolve() == folder.resolve()
    assert not Path(os.readlink(link)).is_absolute()  # works inside the prefix and on /
    leftovers = [p.name for p in folder.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == [".certserver-install.lock"]  # no staging, journal or previous set
    if component is Component.ESB:
        broker = prefix / BROKER
        user = _rabbitmq()
        broker_info = broker.lstat()
        assert stat.S_IMODE(broker_info.st_mode) == 0o700
        assert broker_info.st_uid == user.pw_uid
        assert sorted(p.name for p in broker.iterdir()) == [
            "ca_certificate.pem",
            "server_certificate.pem",
            "server_key.pem",
        ]
        for path in broker.iterdir():
            assert stat.S_IMODE(path.lstat().st_mode) == 0o600
            assert path.lstat().st_uid == user.pw_uid
    else:
        assert not (prefix / BROKER).exists()


def test_reinstall_is_a_no_op_and_rollback_restores_byte_for_byte(
    run: Cli, alpha: Extracted, bravo: Extracted, prefix: Path
) -> None:
    assert _install(run, alpha.result.package_path, "esb", prefix).exit_code == 0
    first = tree(prefix)
    again = _install(run, alpha.result.package_path, "esb", prefix)
    assert again.exit_code == 0 and "already installed: nothing changed" in again.stdout
    assert tree(prefix) == first
    # another deployment's set needs --force...
    refused = _install(run, bravo.result.package_path, "esb", prefix)
    assert refused.exit_code == 1
    assert f"holds deployment {alpha.result.deployment.ccid}" in refused.stderr
    assert tree(prefix) == first
    # ...with it the set is replaced, and the old one kept
    assert _install(run, bravo.result.package_path, "esb", prefix, "--force").exit_code == 0
    esb = prefix / SSL / "esb"
    assert (esb / "esb.crt").read_bytes() == bravo.cert(Component.ESB).read_bytes()
    assert (prefix / BROKER / "server_key.pem").read_bytes() == bravo.key(
        Component.ESB_BROKER
    ).read_bytes()
    rolled = run("install", "--rollback", "--component", "esb", "--prefix", str(prefix))
    assert rolled.exit_code == 0, rolled.stderr
    now = tree(prefix)
    for path, entry in first.items():
        assert now[path] == entry, path
    assert set(now) - set(first) == {
        str(SSL / ".esb.previous"),
        *(str(SSL / ".esb.previous" / n) for n in ("esb.crt", "esb.key", "ca.crt")),
        "etc/rabbitmq/.certs.previous",
        *(
            f"etc/rabbitmq/.certs.previous/{n}"
            for n in ("ca_certificate.pem", "server_certificate.pem", "server_key.pem")
        ),
    }


def test_rollback_without_a_previous_set_is_refused(
    run: Cli, alpha: Extracted, prefix: Path
) -> None:
    assert _install(run, alpha.result.package_path, "ccm", prefix).exit_code == 0
    before = tree(prefix)
    result = run("install", "--rollback", "--component", "ccm", "--prefix", str(prefix))
    assert result.exit_code == 1 and "cannot roll back: no previous set at" in result.stderr
    assert tree(prefix) == before


def test_dry_run_prints_the_plan_and_changes_nothing(
    run: Cli, alpha: Extracted, prefix: Path
) -> None:
    result = _install(run, alpha.result.package_path, "esb", prefix, "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert f"{prefix / SSL / 'esb' / 'esb.key'}  file 0600  root:root" in result.stdout
    assert f"{prefix / BROKER / 'server_key.pem'}  file 0600  rabbitmq:rabbitmq" in result.stdout
    assert f"{prefix / LINK} -> ../../osmosix/ssl/esb  symlink" in result.stdout
    assert tree(prefix) == {}


def test_a_real_folder_at_the_link_needs_force(run: Cli, alpha: Extracted, prefix: Path) -> None:
    old = prefix / LINK
    old.mkdir(parents=True)
    (old / "server.xml.bak").write_text("keep me")
    refused = _install(run, alpha.result.package_path, "ccm", prefix)
    assert refused.exit_code == 1 and "is a real folder, not a link" in refused.stderr
    assert not (prefix / SSL / "ccm").exists()  # the swap was undone
    assert old.is_dir() and not old.is_symlink()
    forced = _install(run, alpha.result.package_path, "ccm", prefix, "--force")
    assert forced.exit_code == 0, forced.stderr
    assert old.is_symlink()
    moved = [p for p in old.parent.iterdir() if p.name.startswith("ssl.moved-")]
    assert len(moved) == 1 and (moved[0] / "server.xml.bak").read_text() == "keep me"


def test_a_failure_between_staging_and_swap_leaves_the_old_set(
    alpha: Extracted, bravo: Extracted, prefix: Path
) -> None:
    paths = HostPaths.resolve(prefix=prefix)
    now = utc_now()

    def plan_for(extracted: Extracted, force: bool = False):  # type: ignore[no-untyped-def]
        package = open_package(extracted.result.package_path.read_bytes(), "pkg")
        owner = broker_owner(None) if os.geteuid() == 0 else None
        return plan_install(package, Component.ESB, paths, broker_owner=owner, now=now, force=force)

    apply(plan_for(alpha))
    before = tree(prefix)

    def boom() -> None:
        raise OSError(5, "Input/output error", "injected")

    with pytest.raises(InstallFailed, match="nothing was changed"):
        apply(plan_for(bravo, force=True), before_swap=boom)
    assert tree(prefix) == before  # old set intact, no staging folder left


def test_a_failure_during_the_swap_undoes_the_first_swap(
    alpha: Extracted, bravo: Extracted, prefix: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from certserver.install import apply as apply_module
    from certserver.install import fsops

    paths = HostPaths.resolve(prefix=prefix)
    owner = broker_owner(None) if os.geteuid() == 0 else None
    package = open_package(alpha.result.package_path.read_bytes(), "pkg")
    apply(plan_install(package, Component.ESB, paths, broker_owner=owner, now=utc_now()))
    before = tree(prefix)
    real_exchange = fsops.exchange
    calls: list[Path] = []

    def second_fails(first: Path, second: Path) -> None:
        calls.append(second)
        if len(calls) == 2:  # the broker folder, after the esb folder was swapped
            raise OSError(28, "No space left on device", str(second))
        real_exchange(first, second)

    monkeypatch.setattr(apply_module.fsops, "exchange", second_fails)
    other = open_package(bravo.result.package_path.read_bytes(), "pkg")
    plan = plan_install(other, Component.ESB, paths, broker_owner=owner, now=utc_now(), force=True)
    with pytest.raises(InstallFailed, match="No space left on device"):
        apply(plan)
    assert tree(prefix) == before


def test_a_read_only_target_leaves_the_old_set(
    run: Cli, alpha: Extracted, bravo: Extracted, prefix: Path
) -> None:
    assert _install(run, alpha.result.package_path, "ccm", prefix).exit_code == 0
    before = tree(prefix)
    ssl_root = prefix / SSL
    chattr = need_tool("chattr") if os.geteuid() == 0 else None
    if chattr:
        run_process(chattr, "+i", str(ssl_root))
    else:
        ssl_root.chmod(0o555)
    try:
        result = _install(run, bravo.result.package_path, "ccm", prefix, "--force")
    finally:
        if chattr:
            run_process(chattr, "-i", str(ssl_root))
        else:
            ssl_root.chmod(0o755)
    assert result.exit_code == 1
    assert result.stderr.startswith("certserver: error: ") and len(result.stderr.splitlines()) == 1
    assert tree(prefix) == before


# -- hostile and broken packages: refused whole, nothing written ----------------------------


def _entry(name: str, mode: int = 0o100644) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
    info.create_system = 3
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


@pytest.mark.parametrize(
    ("label", "extra", "message"),
    [
        ("dotdot", [(_entry("ccm/../../evil"), b"x")], "'..', '.' or an empty part"),
        ("absolute", [(_entry("/etc/passwd"), b"x")], "absolute path"),
        ("backslash", [(_entry("ccm\\..\\evil"), b"x")], "backslash"),
        ("symlink", [(_entry("ccm/chain.crt", 0o120777), b"/etc/shadow")], "symbolic link"),
        ("device", [(_entry("ccm/chain.crt", 0o020644), b"")], "device, FIFO or socket"),
        ("duplicate", [(_entry("ccm/ca.crt"), b"x")], "duplicate entry"),
        ("outside", [(_entry("ccm/extra.txt"), b"x")], "outside the package layout"),
        ("bomb", [(_entry("ccm/chain.crt"), b"\0" * (900 << 10))], "over-compressed"),
        (
            "oversized",
            [(_entry("cco/chain.crt"), os.urandom(2 << 20))],
            "more than certserver reads in one file",
        ),
    ],
)
def test_unsafe_archives_are_refused_whole(
    run: Cli,
    alpha: Extracted,
    prefix: Path,
    tmp_path: Path,
    label: str,
    extra: list[tuple[zipfile.ZipInfo, bytes]],
    message: str,
) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        hostile = rewrite_package(
            alpha.result.package_path, tmp_path / f"{label}.zip", rehash=False, extra=extra
        )
    result = _install(run, hostile, "ccm", prefix)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"certserver: error: {hostile}: unsafe zip entry"), (
        result.stderr
    )
    assert message in result.stderr
    assert tree(prefix) == {}


def test_broken_packages_are_refused_with_every_reason(
    run: Cli, alpha: Extracted, bravo: Extracted, prefix: Path, tmp_path: Path
) -> None:
    package = alpha.result.package_path
    cases = {
        "tampered": (
            rewrite_package(
                package,
                tmp_path / "t.zip",
                {"ccm/ca.crt": bravo.ca(Component.CCM).read_bytes()},
                rehash=False,
            ),
            ["ccm/ca.crt: SHA-256 does not match the manifest"],
        ),
        "swapped-key": (
            rewrite_package(
                package,
                tmp_path / "k.zip",
                {"ccm/mgmtserver.key": alpha.key(Component.CCO).read_bytes()},
            ),
            ["ccm key: mgmtserver.key does not match mgmtserver.crt"],
        ),
        "other-deployment": (
            rewrite_package(
                package,
                tmp_path / "o.zip",
                {
                    "ccm/mgmtserver.crt": bravo.cert(Component.CCM).read_bytes(),
                    "ccm/mgmtserver.key": bravo.key(Component.CCM).read_bytes(),
                },
            ),
            [
                "ccm chain: does not verify to ca.crt",
                f"ccm identity: certificate is of deployment {bravo.result.deployment.ccid}, "
                f"expected {alpha.result.deployment.ccid}",
            ],
        ),
        "wrong-folder": (
            rewrite_package(
                package,
                tmp_path / "w.zip",
                {
                    "ccm/mgmtserver.crt": alpha.cert(Component.CCO).read_bytes(),
                    "ccm/mgmtserver.key": alpha.key(Component.CCO).read_bytes(),
                },
            ),
            ["ccm identity: certificate is for cco, not ccm"],
        ),
    }
    for label, (path, reasons) in cases.items():
        result = _install(run, path, "ccm", prefix)
        assert result.exit_code == 1, label
        assert result.stderr.startswith(f"certserver: error: {path}: refused: "), result.stderr
        for reason in reasons:
            assert reason in result.stderr, (label, result.stderr)
        assert len(result.stderr.splitlines()) == 1
        assert tree(prefix) == {}, label


def test_an_expired_package_is_refused_and_one_near_expiry_warns(
    tmp_path: Path, prefix: Path
) -> None:
    import datetime as dt

    from certserver.config import Settings
    from certserver.identity import DeploymentName
    from certserver.service import CertServer, CreateRequest

    from .conftest import env_for

    settings = Settings.from_env(env_for(tmp_path / "home"))
    out = tmp_path / "out"
    out.mkdir()
    now = dt.datetime.now(dt.UTC)
    made = {}
    for name, age in (("old", 731), ("soon", 720)):
        with CertServer(settings, clock=lambda age=age: now - dt.timedelta(days=age)) as service:
            made[name] = service.create_deployment(
                CreateRequest(DeploymentName(name), out)
            ).package_path
    run = Cli(env_for(tmp_path / "home"))
    expired = _install(run, made["old"], "cco", prefix)
    assert expired.exit_code == 1 and "cco expiry: expired 1 days ago" in expired.stderr
    assert tree(prefix) == {}
    soon = _install(run, made["soon"], "cco", prefix)
    assert soon.exit_code == 0
    assert "certserver: warning: cco expiry: expires in 10 days" in soon.stderr


def test_the_broker_owner_must_exist(run: Cli, alpha: Extracted, prefix: Path) -> None:
    need(os.geteuid() == 0, "owners are resolved only as root")
    result = _install(run, alpha.result.package_path, "esb", prefix, "--owner", "no-such-user")
    assert result.exit_code == 1 and "user 'no-such-user' does not exist" in result.stderr
    assert tree(prefix) == {}
    ok = _install(run, alpha.result.package_path, "esb", prefix, "--owner", "nobody:nogroup")
    assert ok.exit_code == 0, ok.stderr
    assert (prefix / BROKER).lstat().st_uid == pwd.getpwnam("nobody").pw_uid


def test_restart_runs_after_install_and_its_failure_is_reported(
    run: Cli, alpha: Extracted, prefix: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "restarted"
    ok = _install(run, alpha.result.package_path, "ccm", prefix, "--restart", f"touch {marker}")
    assert ok.exit_code == 0 and marker.exists()
    other = prefix.parent / "other-root"
    other.mkdir()
    failed = _install(run, alpha.result.package_path, "ccm", other, "--restart", "false")
    assert failed.exit_code == 1
    assert (
        "restart command 'false' failed (exit code 1); the new files stay installed"
        in failed.stderr
    )
    assert (other / SSL / "ccm" / "mgmtserver.key").is_file()
    # the shell is never involved: metacharacters are plain arguments
    third = prefix.parent / "third-root"
    third.mkdir()
    quiet = _install(
        run, alpha.result.package_path, "ccm", third, "--restart", f"echo ; touch {marker}-2"
    )
    assert quiet.exit_code == 0 and not Path(f"{marker}-2").exists()


def test_non_root_install_into_a_prefix_skips_owners_with_a_warning(
    alpha: Extracted, request: pytest.FixtureRequest
) -> None:
    need(os.geteuid() == 0, "needs root to become another user")
    setpriv = need_tool("setpriv")
    nobody = pwd.getpwnam("nobody")
    work = Path(tempfile.mkdtemp(prefix="certserver-nobody-"))  # pytest's tmp is root-only
    request.addfinalizer(lambda: shutil.rmtree(work, ignore_errors=True))
    os.chown(work, nobody.pw_uid, nobody.pw_gid)
    package = work / "pkg.zip"
    package.write_bytes(alpha.result.package_path.read_bytes())
    os.chown(package, nobody.pw_uid, nobody.pw_gid)
    from .conftest import certserver_script

    done = run_process(
        setpriv,
        f"--reuid={nobody.pw_uid}",
        f"--regid={nobody.pw_gid}",
        "--clear-groups",
        certserver_script(),
        "install",
        str(package),
        "--component",
        "esb",
        "--prefix",
        str(work / "root"),
        env={"HOME": str(work), "CERTSERVER_HOME": str(work / "home")},
    )
    assert done.returncode == 0, done.stderr
    assert "warning: not running as root: owners are left as they are" in done.stderr
    key = work / "root" / BROKER / "server_key.pem"
    assert key.lstat().st_uid == nobody.pw_uid and stat.S_IMODE(key.lstat().st_mode) == 0o600


def test_install_errors_name_the_package(run: Cli, prefix: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.zip"
    result = _install(run, missing, "ccm", prefix)
    assert result.stderr == f"certserver: error: {missing}: no such file\n"
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    result = _install(run, junk, "ccm", prefix)
    assert result.stderr == f"certserver: error: {junk}: not a readable zip\n"
    assert tree(prefix) == {}


def test_the_error_class_is_a_domain_error() -> None:
    assert issubclass(InstallFailed, CertserverError)


# -- review findings: each refusal with its acceptance twin --------------------------------


def test_rollback_dry_run_changes_nothing(
    run: Cli, alpha: Extracted, bravo: Extracted, prefix: Path
) -> None:
    assert _install(run, alpha.result.package_path, "ccm", prefix).exit_code == 0
    assert _install(run, bravo.result.package_path, "ccm", prefix, "--force").exit_code == 0
    before = tree(prefix)
    dry = run("install", "--rollback", "--dry-run", "--component", "ccm", "--prefix", str(prefix))
    assert dry.exit_code == 0 and "would roll back" in dry.stdout
    assert tree(prefix) == before


def test_a_folder_holding_more_than_a_set_is_not_swapped_out(
    run: Cli, alpha: Extracted, prefix: Path
) -> None:
    config = prefix / "etc/rabbitmq/rabbitmq.conf"
    config.parent.mkdir(parents=True)
    config.write_text("listeners.ssl.default = 5671\n")
    result = _install(
        run,
        alpha.result.package_path,
        "esb",
        prefix,
        "--rabbitmq-certs",
        "/etc/rabbitmq",
        "--no-tomcat-link",
    )
    assert (
        result.exit_code == 1
        and "holds more than a certificate set (rabbitmq.conf)" in result.stderr
    )
    assert config.read_text() == "listeners.ssl.default = 5671\n"
    assert not (prefix / SSL / "esb").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--rabbitmq-certs", "/"], "is a root folder"),
        (["--rabbitmq-certs", "/usr/local/osmosix/ssl/esb"], "overlap"),
        (["--tomcat-ssl-link", "/usr/local/osmosix/ssl/esb/link"], "the Tomcat link"),
    ],
)
def test_paths_that_would_swap_out_something_else_are_refused(
    run: Cli, alpha: Extracted, tmp_path: Path, options: list[str], message: str
) -> None:
    result = run("install", str(alpha.result.package_path), "--component", "esb", *options)
    assert result.exit_code == 1 and message in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_a_zip_entry_that_lies_about_its_size_is_refused(
    run: Cli, alpha: Extracted, prefix: Path, tmp_path: Path
) -> None:
    import io
    import zlib

    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = compressor.compress(b"\0" * (8 << 20)) + compressor.flush()
    buffer = io.BytesIO()
    with zipfile.ZipFile(alpha.result.package_path) as source, zipfile.ZipFile(buffer, "w") as out:
        for info in source.infolist():
            out.writestr(info, source.read(info))
        info = _entry("ccm/chain.crt")
        info.file_size, info.CRC, info.compress_size = 1000, zlib.crc32(b"\0" * 1000), len(stream)
        out.fp.seek(out.start_dir)  # type: ignore[union-attr]
        info.header_offset = out.start_dir
        out.fp.write(info.FileHeader(False))  # type: ignore[union-attr]
        out.fp.write(stream)  # type: ignore[union-attr]
        out.start_dir = out.fp.tell()  # type: ignore[union-attr]
        out.filelist.append(info)
        out._didModify = True  # type: ignore[attr-defined]
    liar = tmp_path / "liar.zip"
    liar.write_bytes(buffer.getvalue())
    result = _install(run, liar, "ccm", prefix)
    # read no further than the header admits (memory stays bounded), then refused
    assert result.exit_code == 1 and result.stderr.startswith(f"certserver: error: {liar}: ")
    assert len(result.stderr.splitlines()) == 1
    assert tree(prefix) == {}


def test_the_link_is_right_when_tomcat_itself_is_a_symlink(
    run: Cli, alpha: Extracted, prefix: Path
) -> None:
    real = prefix / "opt/apache-tomcat-10/conf"
    real.mkdir(parents=True)
    (prefix / "usr/local").mkdir(parents=True)
    (prefix / "usr/local/tomcat").symlink_to("../../opt/apache-tomcat-10")
    assert _install(run, alpha.result.package_path, "ccm", prefix).exit_code == 0
    assert (real / "ssl" / "mgmtserver.key").is_file()  # the link reaches the folder
    doctor = run("doctor", "--component", "ccm", "--prefix", str(prefix))
    assert doctor.exit_code == 0, doctor.stdout


def test_repointing_the_link_from_another_component_needs_force(
    run: Cli, alpha: Extracted, prefix: Path
) -> None:
    assert _install(run, alpha.result.package_path, "ccm", prefix).exit_code == 0
    refused = _install(run, alpha.result.package_path, "mon", prefix)
    assert refused.exit_code == 1 and "points to ../../osmosix/ssl/ccm" in refused.stderr
    assert not (prefix / SSL / "mon").exists()
    assert _install(run, alpha.result.package_path, "mon", prefix, "--force").exit_code == 0
    assert (prefix / LINK).resolve() == (prefix / SSL / "mon").resolve()


def test_a_key_in_a_certificate_file_is_refused(
    run: Cli, alpha: Extracted, prefix: Path, tmp_path: Path
) -> None:
    leaky = rewrite_package(
        alpha.result.package_path,
        tmp_path / "leaky.zip",
        {
            "ccm/ca.crt": alpha.ca(Component.CCM).read_bytes()
            + alpha.key(Component.CCM).read_bytes()
        },
    )
    result = _install(run, leaky, "ccm", prefix)
    assert result.exit_code == 1 and "ca.crt holds a private key" in result.stderr
    assert tree(prefix) == {}


def test_a_fifo_in_the_installed_folder_does_not_hang(
    run: Cli, alpha: Extracted, bravo: Extracted, prefix: Path
) -> None:
    assert _install(run, alpha.result.package_path, "ccm", prefix).exit_code == 0
    cert = prefix / SSL / "ccm" / "mgmtserver.crt"
    cert.unlink()
    os.mkfifo(cert)
    doctor = run("doctor", "--component", "ccm", "--prefix", str(prefix))
    assert doctor.exit_code == 1 and "is not a regular file" in doctor.stdout
    forced = _install(run, bravo.result.package_path, "ccm", prefix, "--force")
    assert forced.exit_code == 0 and cert.is_file()


def test_the_same_deployment_with_another_ca_needs_force(
    run: Cli, alpha: Extracted, prefix: Path, tmp_path: Path
) -> None:
    import datetime as dt

    from certserver import package as package_module
    from certserver.authority import CertificateAuthority
    from certserver.identity import DeploymentName, Identity
    from certserver.keys import KeySpec, to_pkcs8_der
    from certserver.package import ComponentMaterial, DeploymentMaterial
    from certserver.profiles import DEFAULT_ORGANIZATION

    assert _install(run, alpha.result.package_path, "ccm", prefix).exit_code == 0
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ccid = alpha.result.deployment.ccid
    spec = KeySpec.EC_P256
    other_ca = CertificateAuthority.create(
        DeploymentName("alpha"), ccid, DEFAULT_ORGANIZATION, spec, now
    )
    components = []
    for component in Component:
        key = spec.generate()
        cert = other_ca.issue(
            Identity(ccid, component), key.public_key(), spec, DEFAULT_ORGANIZATION, (), now, 30
        )
        components.append(ComponentMaterial(component, cert, to_pkcs8_der(key)))
    material = DeploymentMaterial(
        DeploymentName("alpha"),
        ccid,
        "certserver",
        now,
        (other_ca.certificate,),
        (),
        tuple(components),
    )
    impostor = tmp_path / "alpha_certs.zip"
    impostor.write_bytes(package_module.build(material))
    refused = _install(run, impostor, "ccm", prefix)
    assert refused.exit_code == 1 and "trusts another CA than this package" in refused.stderr
    assert _install(run, impostor, "ccm", prefix, "--force").exit_code == 0


def test_a_crash_between_the_two_esb_swaps_is_undone_by_the_next_run(
    run: Cli, alpha: Extracted, bravo: Extracted, prefix: Path
) -> None:
    import sys

    assert _install(run, alpha.result.package_path, "esb", prefix).exit_code == 0
    before = tree(prefix)
    crash = (
        "import os, sys\n"
        "from certserver.install import fsops\n"
        "real, calls = fsops.exchange, []\n"
        "def exchange(a, b):\n"
        "    calls.append(b)\n"
        "    if len(calls) == 2:\n"
        "        os._exit(9)  # killed between the esb swap and the broker swap\n"
        "    real(a, b)\n"
        "fsops.exchange = exchange\n"
        "from certserver.cli import cli\n"
        "cli.main(sys.argv[1:], prog_name='certserver')\n"
    )
    done = run_process(
        sys.executable,
        "-c",
        crash,
        "install",
        str(bravo.result.package_path),
        "--component",
        "esb",
        "--prefix",
        str(prefix),
        "--force",
    )
    assert done.returncode == 9
    esb_cert = (prefix / SSL / "esb" / "esb.crt").read_bytes()
    assert esb_cert == bravo.cert(Component.ESB).read_bytes()  # a mix, for now...
    doctor = run("doctor", "--component", "esb", "--prefix", str(prefix))
    assert (
        doctor.exit_code == 1
        and "FAIL install: an install or rollback was interrupted" in doctor.stdout
    )
    again = _install(run, alpha.result.package_path, "esb", prefix)  # ...until the next run
    assert again.exit_code == 0 and "already installed" in again.stdout
    assert tree(prefix) == before  # the old sets, whole; no staging, no journal
    assert run("doctor", "--component", "esb", "--prefix", str(prefix)).exit_code == 0


def test_owner_for_a_component_without_broker_files_is_reported(
    run: Cli, alpha: Extracted, prefix: Path
) -> None:
    result = _install(run, alpha.result.package_path, "ccm", prefix, "--owner", "nobody")
    assert result.exit_code == 0
    assert (
        "warning: --owner applies to the broker's files, which ccm does not have" in result.stderr
    )
    quiet = _install(run, alpha.result.package_path, "ccm", prefix)
    assert "warning" not in quiet.stderr


def _crashing(at: int, *args: str, step: str = "exchange") -> subprocess.CompletedProcess[str]:
    """Run the CLI in a process that dies (exit 9) at its ``at``-th ``step``: before a
    directory exchange, or just after a rename (the steps that keep ``.previous``)."""
    import sys

    patch = {
        "exchange": (
            "from certserver.install import fsops\n"
            "real = fsops.exchange\n"
            "def exchange(a, b):\n"
            "    calls.append(b)\n"
            f"    if len(calls) == {at}:\n"
            "        os._exit(9)\n"
            "    real(a, b)\n"
            "fsops.exchange = exchange\n"
        ),
        "rename": (
            "import pathlib\n"
            "real = pathlib.Path.rename\n"
            "def rename(self, target):\n"
            "    result = real(self, target)\n"
            "    calls.append(target)\n"
            f"    if len(calls) == {at}:\n"
            "        os._exit(9)\n"
            "    return result\n"
            "pathlib.Path.rename = rename\n"
        ),
    }[step]
    code = (
        "import os, sys\ncalls = []\n"
        + patch
        + "from certserver.cli import cli\ncli.main(sys.argv[1:], prog_name='certserver')\n"
    )
    return run_process(sys.executable, "-c", code, *args)


@pytest.mark.parametrize("at", [1, 2])
def test_a_crash_at_any_exchange_leaves_old_or_new_sets_whole(
    run: Cli, alpha: Extracted, bravo: Extracted, prefix: Path, at: int
) -> None:
    """Exchanges 1-2 swap esb and the broker (before the commit)."""
    assert _install(run, bravo.result.package_path, "esb", prefix).exit_code == 0
    assert _install(run, alpha.result.package_path, "esb", prefix, "--force").exit_code == 0
    crashed = _crashing(
        at,
        "install",
        str(bravo.result.package_path),
        "--component",
        "esb",
        "--prefix",
        str(prefix),
        "--force",
    )
    assert crashed.returncode == 9
    # the next locked command finishes or undoes it; the sets are then whole and alike
    doctor_before = run("doctor", "--component", "esb", "--prefix", str(prefix))
    assert "interrupted" in doctor_before.stdout
    rolled = run(
        "install", "--rollback", "--dry-run", "--component", "esb", "--prefix", str(prefix)
    )
    assert rolled.exit_code == 0
    again = run(
        "install",
        str(alpha.result.package_path),
        "--component",
        "esb",
        "--prefix",
        str(prefix),
        "--force",
    )
    assert again.exit_code == 0, again.stderr
    doctor = run("doctor", "--component", "esb", "--prefix", str(prefix))
    assert doctor.exit_code == 0, doctor.stdout
    names = {p.name for p in (prefix / SSL / "esb").iterdir()}
    assert names == {"esb.crt", "esb.key", "ca.crt"}  # no marker left behind
    back = run("install", "--rollback", "--component", "esb", "--prefix", str(prefix))
    assert back.exit_code == 0, back.stderr
    esb = (prefix / SSL / "esb" / "esb.crt").read_bytes()
    broker = (prefix / BROKER / "server_certificate.pem").read_bytes()
    assert (esb, broker) == (
        bravo.cert(Component.ESB).read_bytes(),
        bravo.cert(Component.ESB_BROKER).read_bytes(),
    ) or (esb, broker) == (
        alpha.cert(Component.ESB).read_bytes(),
        alpha.cert(Component.ESB_BROKER).read_bytes(),
    )


@pytest.mark.parametrize("at", [1, 2])
def test_a_crash_during_rollback_is_undone(
    run: Cli, alpha: Extracted, bravo: Extracted, prefix: Path, at: int
) -> None:
    assert _install(run, bravo.result.package_path, "esb", prefix).exit_code == 0
    assert _install(run, alpha.result.package_path, "esb", prefix, "--force").exit_code == 0
    before = tree(prefix)
    crashed = _crashing(at, "install", "--rollback", "--component", "esb", "--prefix", str(prefix))
    assert crashed.returncode == 9
    assert _install(run, alpha.result.package_path, "esb", prefix).exit_code == 0  # recovers
    assert tree(prefix) == before


def test_force_over_a_folder_with_subfolders_keeps_it_as_previous(
    run: Cli, alpha: Extracted, prefix: Path
) -> None:
    assert _install(run, alpha.result.package_path, "ccm", prefix).exit_code == 0
    notes = prefix / SSL / "ccm" / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("x")
    assert _install(run, alpha.result.package_path, "ccm", prefix, "--force").exit_code == 0
    assert (prefix / SSL / ".ccm.previous" / "notes" / "keep.txt").read_text() == "x"


@pytest.mark.parametrize("at", [1, 2, 3, 4])
def test_a_crash_while_keeping_the_previous_set_is_finished_right(
    run: Cli, alpha: Extracted, bravo: Extracted, prefix: Path, tmp_path: Path, at: int
) -> None:
    """Three deployments: after the commit, .previous must become the set just replaced."""
    from .conftest import make_extracted

    charlie = make_extracted(tmp_path, "charlie")
    assert _install(run, alpha.result.package_path, "esb", prefix).exit_code == 0
    assert _install(run, bravo.result.package_path, "esb", prefix, "--force").exit_code == 0
    crashed = _crashing(
        at,
        "install",
        str(charlie.result.package_path),
        "--component",
        "esb",
        "--prefix",
        str(prefix),
        "--force",
        step="rename",
    )
    assert crashed.returncode == 9
    back = run("install", "--rollback", "--component", "esb", "--prefix", str(prefix))
    assert back.exit_code == 0, back.stderr
    assert (prefix / SSL / "esb" / "esb.crt").read_bytes() == bravo.cert(Component.ESB).read_bytes()
    assert (prefix / BROKER / "server_certificate.pem").read_bytes() == bravo.cert(
        Component.ESB_BROKER
    ).read_bytes()
    assert run("doctor", "--component", "esb", "--prefix", str(prefix)).exit_code == 0


def test_a_crash_after_moving_a_real_folder_aside_puts_it_back(
    run: Cli, alpha: Extracted, bravo: Extracted, prefix: Path
) -> None:
    import sys

    assert (
        _install(run, alpha.result.package_path, "ccm", prefix, "--no-tomcat-link").exit_code == 0
    )
    real = prefix / LINK
    real.mkdir(parents=True)
    (real / "keystore.p12").write_text("customer's")
    code = (
        "import os, sys, pathlib\n"
        "real = pathlib.Path.rename\n"
        "def rename(self, target):\n"
        "    result = real(self, target)\n"
        "    if '.moved-' in str(target):\n"
        "        os._exit(9)\n"
        "    return result\n"
        "pathlib.Path.rename = rename\n"
        "from certserver.cli import cli\n"
        "cli.main(sys.argv[1:], prog_name='certserver')\n"
    )
    crashed = run_process(
        sys.executable,
        "-c",
        code,
        "install",
        str(bravo.result.package_path),
        "--component",
        "ccm",
        "--prefix",
        str(prefix),
        "--force",
    )
    assert crashed.returncode == 9
    again = _install(run, alpha.result.package_path, "ccm", prefix, "--no-tomcat-link")
    assert again.exit_code == 0, again.stderr
    assert (real / "keystore.p12").read_text() == "customer's" and not real.is_symlink()
    assert (prefix / SSL / "ccm" / "mgmtserver.crt").read_bytes() == alpha.cert(
        Component.CCM
    ).read_bytes()
