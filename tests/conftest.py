"""Shared fixtures: an isolated certserver home, deployments, real tools, PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from certserver.cli import cli
from certserver.config import Settings
from certserver.hosts import Host
from certserver.identity import Component, DeploymentName
from certserver.keys import KeySpec
from certserver.service import CertServer, CreateRequest, CreateResult

REQUIRE_INTEGRATION = os.environ.get("CERTSERVER_REQUIRE_INTEGRATION") == "1"
POSTGRES_URL = os.environ.get("CERTSERVER_TEST_POSTGRES_URL")
LOOPBACK_HOSTS = (Host.parse("localhost"), Host.parse("127.0.0.1"))


def need(condition: bool, why: str) -> None:
    """Skip when a real tool is missing, but fail under CERTSERVER_REQUIRE_INTEGRATION=1."""
    if condition:
        return
    if REQUIRE_INTEGRATION:
        pytest.fail(f"integration requirement missing: {why}")
    pytest.skip(why)


def need_tool(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"{name} is not installed")
    assert path is not None
    return path


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {"CERTSERVER_HOME": str(home), "CERTSERVER_BUSY_TIMEOUT": "0.5"}
    env.update(extra)
    return env


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


@dataclass
class Cli:
    """Runs the real click command in-process with an isolated environment."""

    env: dict[str, str]

    def __call__(self, *args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=self.env, catch_exceptions=False)


@pytest.fixture
def run(home: Path) -> Cli:
    return Cli(env_for(home))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None for the embedded SQLite default, else a fresh PostgreSQL database (dropped after)."""
    if request.param == "sqlite":
        yield None
        return
    need(POSTGRES_URL is not None, "CERTSERVER_TEST_POSTGRES_URL is not set")
    assert POSTGRES_URL is not None
    yield from _postgres_database(POSTGRES_URL)


def _postgres_database(admin_url: str) -> Iterator[str]:
    import sqlalchemy as sa

    name = f"certserver_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def settings(home: Path, database_url: str | None) -> Settings:
    extra = {"CERTSERVER_DATABASE_URL": database_url} if database_url else {}
    return Settings.from_env(env_for(home, **extra))


def create(
    settings: Settings,
    name: str,
    out: Path,
    *,
    spec: KeySpec = KeySpec.EC_P256,
    hosts: tuple[Host, ...] = LOOPBACK_HOSTS,
) -> CreateResult:
    request = CreateRequest(
        name=DeploymentName(name),
        out_dir=out,
        key_spec=spec,
        hosts=dict.fromkeys(Component, hosts),
    )
    with CertServer(settings) as service:
        return service.create_deployment(request)


def extract(zip_path: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(into)
    return into


@dataclass(frozen=True)
class Extracted:
    """A created deployment, its package and the package extracted."""

    result: CreateResult
    root: Path

    def folder(self, component: Component) -> Path:
        return self.root / component.folder

    def cert(self, component: Component) -> Path:
        return self.folder(component) / component.cert_file

    def key(self, component: Component) -> Path:
        return self.folder(component) / component.key_file

    def ca(self, component: Component) -> Path:
        return self.folder(component) / component.ca_file


def make_extracted(tmp_path: Path, name: str, spec: KeySpec = KeySpec.EC_P256) -> Extracted:
    home = tmp_path / f"home-{name}"
    out = tmp_path / f"out-{name}"
    out.mkdir()
    result = create(Settings.from_env(env_for(home)), name, out, spec=spec)
    return Extracted(result, extract(result.package_path, tmp_path / f"x-{name}"))


@pytest.fixture(scope="module")
def alpha(tmp_path_factory: pytest.TempPathFactory) -> Extracted:
    """One deployment for read-only tests."""
    return make_extracted(tmp_path_factory.mktemp("alpha"), "alpha")


@pytest.fixture(scope="module")
def bravo(tmp_path_factory: pytest.TempPathFactory) -> Extracted:
    """A second, unrelated deployment (another CCID and CA)."""
    return make_extracted(tmp_path_factory.mktemp("bravo"), "bravo")


def certserver_script() -> str:
    """The installed console script, next to this interpreter."""
    script = Path(sys.executable).with_name("certserver")
    assert script.exists(), "certserver is not installed in this environment"
    return str(script)


def snapshot(*roots: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``roots`` with its mode and content, to prove nothing changed."""
    files: dict[str, tuple[int, bytes]] = {}
    for root in roots:
        if not root.exists():
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file():
                files[str(path)] = (path.stat().st_mode, path.read_bytes())
    return files


def run_process(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        input=stdin,
        timeout=timeout,
        check=False,
    )


def run_openssl(*args: str) -> subprocess.CompletedProcess[str]:
    """The real openssl CLI; the step must succeed (it makes a test's inputs)."""
    done = run_process(need_tool("openssl"), *args)
    assert done.returncode == 0, done.stderr
    return done
