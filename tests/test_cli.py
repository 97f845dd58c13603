"""The command line: the main job end to end, and every bad input of the core issue.

Each bad input must give one line on stderr naming the problem, a non-zero exit, and leave
the file system and the store as they were.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from certserver.identity import Component

from .conftest import Cli, certserver_script, env_for, extract, need_tool, run_process, snapshot
from .openssl_tools import s_client, s_server


def _one_line_error(result: object, *fragments: str) -> None:
    exit_code = getattr(result, "exit_code", None)
    if exit_code is None:
        exit_code = getattr(result, "returncode")  # noqa: B009
    stderr: str = getattr(result, "stderr")  # noqa: B009
    assert exit_code == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("certserver: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in stderr


def _names(run: Cli) -> list[str]:
    result = run("deployment", "list", "--json")
    assert result.exit_code == 0, result.stderr
    return [row["name"] for row in json.loads(result.stdout)]


# -- the main job, as the README gives it ---------------------------------------------------


def test_main_job_makes_a_package_whose_files_do_mutual_tls(tmp_path: Path) -> None:
    need_tool("openssl")
    script = certserver_script()
    env = env_for(tmp_path / "home")
    work = tmp_path / "work"
    work.mkdir()
    done = run_process(
        script,
        "deployment",
        "create",
        "demo",
        "--host",
        "all=localhost,127.0.0.1",
        env=env,
        cwd=work,
    )
    assert done.returncode == 0, done.stderr
    zip_path = work / "demo_certs.zip"
    assert zip_path.is_file()
    for expected in (
        "demo",
        "CCID",
        "CA fingerprint",
        str(zip_path),
        *[c.folder for c in Component],
    ):
        assert expected in done.stdout
    other = run_process(
        script, "deployment", "create", "other", "--host", "all=localhost", env=env, cwd=work
    )
    assert other.returncode == 0, other.stderr
    demo = extract(zip_path, tmp_path / "demo")
    foreign = extract(work / "other_certs.zip", tmp_path / "other")
    ccm, cco = demo / "ccm", demo / "cco"
    with s_server(ccm / "mgmtserver.crt", ccm / "mgmtserver.key", ccm / "ca.crt", "tls1_3") as port:
        accepted = s_client(
            port, cco / "ca.crt", "tls1_3", cco / "gateway.crt", cco / "gateway.key"
        )
        refused = s_client(
            port,
            cco / "ca.crt",
            "tls1_3",
            foreign / "cco" / "gateway.crt",
            foreign / "cco" / "gateway.key",
        )
    assert accepted.served, accepted.output
    assert not refused.served and "unknown ca" in refused.output


def test_show_list_export_and_inspect(run: Cli, out_dir: Path, tmp_path: Path) -> None:
    assert (
        run(
            "deployment",
            "create",
            "shown",
            "--out",
            str(out_dir),
            "--host",
            "ccm=ccm.example.com",
            "--host",
            "all=10.0.0.5",
        ).exit_code
        == 0
    )
    shown = run("deployment", "show", "shown", "--json")
    assert shown.exit_code == 0
    view = json.loads(shown.stdout)
    hosts = {c["component"]: c["hosts"] for c in view["components"]}
    assert hosts["ccm"] == ["ccm.example.com", "10.0.0.5"]
    assert hosts["cco"] == ["10.0.0.5"]
    table = run("deployment", "show", "shown")
    assert view["ccid"] in table.stdout and "esb_rabbit" in table.stdout
    listed = run("deployment", "list")
    assert "shown" in listed.stdout and view["ccid"] in listed.stdout
    again = tmp_path / "again"
    again.mkdir()
    exported = run("deployment", "export", "shown", "--out", str(again))
    assert exported.exit_code == 0
    assert (again / "shown_certs.zip").read_bytes() == (out_dir / "shown_certs.zip").read_bytes()
    inspected = run("inspect", str(out_dir / "shown_certs.zip"), "--json")
    assert inspected.exit_code == 0
    report = json.loads(inspected.stdout)[0]["contents"][0]
    assert report["kind"] == "package" and report["manifest_ok"] and report["ccid"] == view["ccid"]


def test_export_of_an_unknown_deployment_is_refused(run: Cli, out_dir: Path) -> None:
    assert run("deployment", "create", "known", "--out", str(out_dir)).exit_code == 0
    _one_line_error(
        run("deployment", "export", "unknown", "--out", str(out_dir)), "no deployment named unknown"
    )


def test_list_of_an_empty_store(run: Cli, out_dir: Path) -> None:
    assert run("deployment", "create", "only", "--out", str(out_dir)).exit_code == 0
    assert _names(run) == ["only"]


# -- bad input ------------------------------------------------------------------------------


@contextlib.contextmanager
def unchanged(run: Cli, *paths: Path) -> Iterator[None]:
    """Asserts that files under ``paths`` and the deployments in the store did not change."""
    before_files = snapshot(*paths)
    home = Path(run.env["CERTSERVER_HOME"])
    before_names = None
    if (home / "certserver.db").exists():
        with contextlib.suppress(AssertionError):  # a broken store: the file snapshot covers it
            before_names = _names(run)
    yield
    assert snapshot(*paths) == before_files
    if before_names is not None:
        assert _names(run) == before_names


@pytest.fixture
def seeded(run: Cli, out_dir: Path) -> Cli:
    """A store with one deployment, so that 'store unchanged' has something to keep."""
    assert run("deployment", "create", "seed", "--out", str(out_dir)).exit_code == 0
    (out_dir / "seed_certs.zip").unlink()
    return run


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad_Name"], "invalid deployment name 'Bad_Name'"),
        (["-x"], "No such option"),
        (["ok", "--host", "tomcat=localhost"], "unknown component 'tomcat'"),
        (["ok", "--host", "ccm=bad host"], "invalid host 'bad host'"),
        (["ok", "--host", "ccm=*.example.com"], "wildcards are not allowed"),
        (["ok", "--host", "localhost"], "expected COMPONENT=HOST"),
        (["ok", "--host", "ccm=999.1.1.1"], "invalid host '999.1.1.1'"),
        (["ok", "--org", ""], "invalid organization"),
        (["ok", "--validity-days", "4000"], "not outlive the 3650-day deployment CA"),
    ],
)
def test_bad_arguments_are_refused(
    seeded: Cli, out_dir: Path, args: list[str], message: str
) -> None:
    with unchanged(seeded, out_dir):
        result = seeded("deployment", "create", *args, "--out", str(out_dir))
    if message == "No such option":
        assert result.exit_code == 2  # click's usage error
        return
    _one_line_error(result, message)


def test_a_second_create_with_the_same_name_is_refused(seeded: Cli, out_dir: Path) -> None:
    with unchanged(seeded, out_dir):
        _one_line_error(
            seeded("deployment", "create", "seed", "--out", str(out_dir)),
            "deployment seed already exists",
        )


def test_an_existing_zip_is_kept_unless_forced(seeded: Cli, out_dir: Path) -> None:
    target = out_dir / "fresh_certs.zip"
    target.write_bytes(b"precious")
    with unchanged(seeded, out_dir):
        _one_line_error(
            seeded("deployment", "create", "fresh", "--out", str(out_dir)),
            str(target),
            "already exists",
            "--force",
        )
    forced = seeded("deployment", "create", "fresh", "--out", str(out_dir), "--force")
    assert forced.exit_code == 0, forced.stderr
    assert zipfile.is_zipfile(target)
    assert sorted(p.name for p in out_dir.iterdir()) == ["fresh_certs.zip"]  # no temp files left


def test_a_missing_out_dir_is_refused(seeded: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with unchanged(seeded, tmp_path):
        _one_line_error(
            seeded("deployment", "create", "x", "--out", str(missing)),
            str(missing),
            "does not exist",
        )


def test_an_out_path_that_is_a_file_is_refused(seeded: Cli, tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    with unchanged(seeded, tmp_path):
        _one_line_error(
            seeded("deployment", "create", "x", "--out", str(file)), str(file), "not a directory"
        )


def test_a_directory_at_the_zip_path_is_refused(seeded: Cli, out_dir: Path) -> None:
    (out_dir / "x_certs.zip").mkdir()
    with unchanged(seeded, out_dir):
        for extra in ([], ["--force"]):
            _one_line_error(
                seeded("deployment", "create", "x", "--out", str(out_dir), *extra),
                "x_certs.zip",
                "is a directory",
            )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("garbage", "CERTSERVER_DATABASE_URL is not a database URL"),
        ("mysql://u@127.0.0.1/db", "unsupported database"),
        ("postgresql+psycopg://u:hunter2@127.0.0.1:1/db", "connection"),
    ],
)
def test_a_bad_database_url_is_refused_without_its_password(
    home: Path, out_dir: Path, url: str, message: str
) -> None:
    run = Cli(env_for(home, CERTSERVER_DATABASE_URL=url))
    with unchanged(run, out_dir):
        result = run("deployment", "create", "x", "--out", str(out_dir))
    _one_line_error(result, message)
    assert "hunter2" not in result.stderr


def test_a_long_name_works(run: Cli, out_dir: Path) -> None:
    name = "n" * 63
    assert run("deployment", "create", name, "--out", str(out_dir)).exit_code == 0
    assert (out_dir / f"{name}_certs.zip").is_file()


@contextlib.contextmanager
def read_only_dir(path: Path) -> Iterator[None]:
    """A directory nobody may create files in: immutable for root, 0555 for others."""
    if os.geteuid() == 0:
        chattr = need_tool("chattr")
        subprocess.run([chattr, "+i", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run([chattr, "-i", str(path)], check=True)
    else:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)


def test_an_unwritable_out_dir_is_refused(seeded: Cli, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    with unchanged(seeded, locked), read_only_dir(locked):
        _one_line_error(seeded("deployment", "create", "x", "--out", str(locked)), str(locked))
        assert list(locked.iterdir()) == []


def test_a_missing_store_is_refused_for_reading(run: Cli, home: Path) -> None:
    for args in (["deployment", "show", "x"], ["deployment", "export", "x"]):
        _one_line_error(run(*args), "no certificate store")
    listed = run("deployment", "list")  # a fresh home simply has no deployments
    assert listed.exit_code == 0 and listed.stdout == "No deployments.\n"
    assert run("deployment", "list", "--json").stdout.strip() == "[]"
    assert not home.exists()


def test_a_lost_store_beside_its_master_key_is_not_silently_replaced(
    seeded: Cli, home: Path, out_dir: Path
) -> None:
    (home / "certserver.db").unlink()
    with unchanged(seeded, home, out_dir):
        for args in (["create", "x", "--out", str(out_dir)], ["list"], ["show", "seed"]):
            _one_line_error(seeded("deployment", *args), "store is missing", "master key")


def test_a_locked_store_is_refused(seeded: Cli, home: Path, out_dir: Path) -> None:
    holder = sqlite3.connect(home / "certserver.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = seeded("deployment", "create", "blocked", "--out", str(out_dir))
        files = sorted(p.name for p in out_dir.iterdir())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    _one_line_error(result, "certserver.db", "locked")
    assert files == []
    assert _names(seeded) == ["seed"]


def test_a_corrupt_store_is_refused(seeded: Cli, home: Path, out_dir: Path) -> None:
    db = home / "certserver.db"
    db.write_bytes(b"this is not a database" * 100)
    with unchanged(seeded, home, out_dir):
        _one_line_error(
            seeded("deployment", "create", "x", "--out", str(out_dir)), str(db), "corrupt"
        )


def test_a_wrong_master_key_is_refused(seeded: Cli, home: Path, out_dir: Path) -> None:
    key_file = home / "master.key"
    saved = key_file.read_bytes()
    key_file.unlink()
    from certserver.masterkey import MasterKey

    MasterKey.create(key_file)
    with unchanged(seeded, home, out_dir):
        _one_line_error(
            seeded("deployment", "create", "x", "--out", str(out_dir)),
            str(key_file),
            "wrong master key",
        )
    key_file.unlink()
    key_file.write_bytes(saved)
    key_file.chmod(0o600)
    assert _names(seeded) == ["seed"]


def test_a_master_key_readable_by_others_is_refused(seeded: Cli, home: Path, out_dir: Path) -> None:
    key_file = home / "master.key"
    key_file.chmod(0o644)
    with unchanged(seeded, home, out_dir):
        _one_line_error(
            seeded("deployment", "create", "x", "--out", str(out_dir)), str(key_file), "chmod 600"
        )


def test_a_named_master_key_file_must_exist(home: Path, out_dir: Path, tmp_path: Path) -> None:
    named = tmp_path / "secrets" / "certserver.key"
    run = Cli(env_for(home, CERTSERVER_MASTER_KEY_FILE=str(named)))
    with unchanged(run, out_dir):
        _one_line_error(
            run("deployment", "create", "x", "--out", str(out_dir)), str(named), "missing"
        )
    assert not named.exists()
    assert not home.exists()  # nothing made before the key was found missing
    made = run("master-key", "create", str(named.parent / "new.key"))
    assert made.exit_code != 0 and "cannot create" in made.stderr  # no such folder
    named.parent.mkdir()
    assert run("master-key", "create", str(named)).exit_code == 0
    assert named.stat().st_mode & 0o777 == 0o600
    _one_line_error(run("master-key", "create", str(named)), str(named), "already exists")
    assert run("deployment", "create", "x", "--out", str(out_dir)).exit_code == 0


def test_home_and_secrets_are_private(run: Cli, home: Path, out_dir: Path) -> None:
    assert run("deployment", "create", "private", "--out", str(out_dir)).exit_code == 0
    assert (home.stat().st_mode & 0o777) == 0o700
    assert (home / "master.key").stat().st_mode & 0o777 == 0o600
    assert (home / "certserver.db").stat().st_mode & 0o777 == 0o600


def test_concurrent_first_uses_of_a_new_store_all_succeed(
    database_url: str | None, tmp_path: Path
) -> None:
    script = certserver_script()
    home = tmp_path / "home"
    env = env_for(home, CERTSERVER_BUSY_TIMEOUT="30")
    if database_url:
        env["CERTSERVER_DATABASE_URL"] = database_url
    out = tmp_path / "out"
    out.mkdir()
    names = [f"race-{i}" for i in range(4)]
    processes = [
        subprocess.Popen(
            [script, "deployment", "create", name, "--out", str(out)],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in processes]
    assert all(code == 0 for code, _ in results), results
    listed = run_process(script, "deployment", "list", "--json", env=env)
    assert sorted(row["name"] for row in json.loads(listed.stdout)) == names
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}_certs.zip" for n in names)


def _wait_until_it_opens(pid: int, path: Path, timeout: float = 30) -> None:
    """Until process ``pid`` holds ``path`` open (so it is waiting on the store's lock)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            fds = Path(f"/proc/{pid}/fd")
            if any(os.readlink(fd) == str(path) for fd in fds.iterdir()):
                return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never opened {path}")


def test_sigterm_while_waiting_for_the_store_leaves_nothing(
    seeded: Cli, home: Path, out_dir: Path
) -> None:
    import signal

    holder = sqlite3.connect(home / "certserver.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        process = subprocess.Popen(
            [certserver_script(), "deployment", "create", "victim", "--out", str(out_dir)],
            env={**os.environ, **env_for(home, CERTSERVER_BUSY_TIMEOUT="4")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _wait_until_it_opens(process.pid, home / "certserver.db")
        # Python runs the handler once sqlite's C-level wait returns: within the busy timeout
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 128 + signal.SIGTERM
    assert list(out_dir.iterdir()) == []
    assert _names(seeded) == ["seed"]


def test_an_empty_store_file_beside_its_master_key_is_refused(
    seeded: Cli, home: Path, out_dir: Path
) -> None:
    (home / "certserver.db").write_bytes(b"")
    with unchanged(seeded, home, out_dir):
        _one_line_error(
            seeded("deployment", "create", "x", "--out", str(out_dir)), "store is missing"
        )


def test_a_damaged_row_is_reported_as_a_corrupt_store(seeded: Cli, home: Path) -> None:
    connection = sqlite3.connect(home / "certserver.db")
    connection.execute("UPDATE certificates SET hosts = 'not json' WHERE component = 'ccm'")
    connection.commit()
    connection.close()
    _one_line_error(seeded("deployment", "show", "seed"), "store is corrupt", "deployment seed")


def test_a_password_in_the_database_url_query_is_masked(home: Path, out_dir: Path) -> None:
    url = "postgresql+psycopg:///db?host=127.0.0.1&port=1&user=u&password=S3cretPW"
    result = Cli(env_for(home, CERTSERVER_DATABASE_URL=url))("deployment", "list")
    _one_line_error(result, "password=REDACTED")
    assert "S3cretPW" not in result.stderr


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--org=Evil\u202eCorp", "invalid organization"),
        ("--org=Two\u2028Lines", "invalid organization"),
        ("--host=ccm=fe80::1%eth0", "scoped IPv6"),
        ("--host=ccm=0.0.0.0", "unspecified address"),
        ("--host=ccm=\u212aa.com", "ASCII (xn--) form"),
        ("--host=ccm=host..", "invalid host"),
    ],
)
def test_deceptive_values_are_refused(
    seeded: Cli, out_dir: Path, option: str, message: str
) -> None:
    with unchanged(seeded, out_dir):
        _one_line_error(seeded("deployment", "create", "x", option, "--out", str(out_dir)), message)


def test_an_error_naming_a_path_with_a_newline_stays_one_line(run: Cli, tmp_path: Path) -> None:
    result = run("inspect", str(tmp_path / "no\nsuch"))
    _one_line_error(result, "no\\nsuch", "no such file")


def test_validity_days_sets_the_not_after_and_create_prints_it(run: Cli, out_dir: Path) -> None:
    result = run("deployment", "create", "short", "--validity-days", "30", "--out", str(out_dir))
    assert result.exit_code == 0
    shown = json.loads(run("deployment", "show", "short", "--json").stdout)
    for component in shown["components"]:
        assert component["not_after"] in result.stdout  # printed by create
        not_before = dt.datetime.fromisoformat(component["not_before"])
        not_after = dt.datetime.fromisoformat(component["not_after"])
        assert not_after - not_before == dt.timedelta(days=30, minutes=5)


def _place_then_fail(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """The zip gets placed, then the store's commit fails (as a crash or a full disk would)."""
    from certserver.files import StagedFile

    real_place = StagedFile.place

    def place_then_fail(self: StagedFile, *, replace: bool) -> None:
        real_place(self, replace=replace)
        raise error

    monkeypatch.setattr(StagedFile, "place", place_then_fail)


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), SystemExit(143)])
def test_a_failure_after_the_zip_is_placed_takes_it_back(
    seeded: Cli, out_dir: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    old = out_dir / "late_certs.zip"
    old.write_bytes(b"the previous package")
    _place_then_fail(monkeypatch, error)
    with pytest.raises(BaseException):  # noqa: B017 - either kind must propagate
        from certserver.config import Settings
        from certserver.identity import DeploymentName
        from certserver.service import CertServer, CreateRequest

        with CertServer(Settings.from_env(seeded.env)) as service:
            service.create_deployment(CreateRequest(DeploymentName("late"), out_dir, force=True))
    monkeypatch.undo()
    assert old.read_bytes() == b"the previous package"
    assert sorted(p.name for p in out_dir.iterdir()) == ["late_certs.zip"]
    assert _names(seeded) == ["seed"]
