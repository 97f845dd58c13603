"""A private Tomcat 10 (DESIGN.md §6): its own CATALINA_BASE, loopback only, run as user
tomcat (it refuses root), JSSE, stopped by its PID; and ``openssl s_client`` against it."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from .conftest import need, need_tool, run_process

CATALINA_HOME = Path("/usr/share/tomcat10")
SYSTEM_CONF = Path("/etc/tomcat10")
PAGE = "certserver-tomcat-ok"

SERVER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- a private Tomcat for certserver's tests; no shutdown port: it is stopped by its PID -->
<Server port="-1" shutdown="SHUTDOWN">
  <Listener className="org.apache.catalina.startup.VersionLoggerListener" />
  <Listener className="org.apache.catalina.security.SecurityListener" />
  <Service name="Catalina">
    <!-- the browser-facing connector: client-cert install points it at its files -->
    <Connector port="{port}" address="127.0.0.1"
               protocol="org.apache.coyote.http11.Http11NioProtocol"
               SSLEnabled="true" scheme="https" secure="true" maxThreads="4"
               sslImplementationName="org.apache.tomcat.util.net.jsse.JSSEImplementation">
        <SSLHostConfig protocols="TLSv1.2+TLSv1.3">
            <Certificate certificateFile="conf/ssl/placeholder.crt"
                         certificateKeyFile="conf/ssl/placeholder.key" type="RSA" />
        </SSLHostConfig>
    </Connector>
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false" />
    </Engine>
  </Service>
</Server>
"""


#: The same instance configured the way Tomcat 7-9 allowed: TLS attributes on the Connector.
OLDER_SERVER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Listener className="org.apache.catalina.security.SecurityListener" />
  <Service name="Catalina">
    <Connector port="{port}" address="127.0.0.1"
               protocol="org.apache.coyote.http11.Http11NioProtocol"
               SSLEnabled="true" scheme="https" secure="true" maxThreads="4"
               clientAuth="false" sslProtocol="TLS"
               {certificate} />
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false" />
    </Engine>
  </Service>
</Server>
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PrivateTomcat:
    base: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    start_seconds: list[float] = field(default_factory=list)

    @classmethod
    def create(cls) -> PrivateTomcat:
        need(os.geteuid() == 0, "a private Tomcat runs as user tomcat: the tests need root")
        need((CATALINA_HOME / "bin" / "catalina.sh").exists(), "tomcat10 is not installed")
        need_tool("setpriv")
        need_tool("java")
        try:
            pwd.getpwnam("tomcat")
        except KeyError:
            need(False, "user tomcat does not exist")
        # under /tmp itself: pytest's own folders are 0700 root, which tomcat cannot enter
        base = Path(tempfile.mkdtemp(prefix="certserver-tomcat-"))
        base.chmod(0o755)
        conf = base / "conf"
        conf.mkdir()
        for item in SYSTEM_CONF.iterdir():
            if item.is_file() and item.name != "server.xml":
                shutil.copy2(item, conf / item.name)
        port = free_port()
        (conf / "server.xml").write_text(SERVER_XML.format(port=port))
        for name in ("logs", "temp", "work", "webapps/ROOT"):
            (base / name).mkdir(parents=True)
        (base / "webapps" / "ROOT" / "index.html").write_text(PAGE + "\n")
        tomcat = pwd.getpwnam("tomcat")
        for path in [base, *base.rglob("*")]:
            os.chown(path, tomcat.pw_uid, tomcat.pw_gid)
        return cls(base, port)

    @property
    def console(self) -> Path:
        return self.base / "logs" / "console.log"

    def start(self, timeout: float = 90) -> None:
        java_home = Path(shutil.which("java") or "java").resolve().parent.parent
        offset = self.console.stat().st_size if self.console.exists() else 0
        started = time.monotonic()
        environment = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.base),
            "LANG": "C.UTF-8",
            "JAVA_HOME": str(java_home),
            "CATALINA_HOME": str(CATALINA_HOME),
            "CATALINA_BASE": str(self.base),
            "CATALINA_TMPDIR": str(self.base / "temp"),
            "JAVA_OPTS": "-Djava.awt.headless=true -Xmx192m -XX:+UseSerialGC "
            "-XX:TieredStopAtLevel=1",
        }
        command = ["setpriv", "--reuid=tomcat", "--regid=tomcat", "--init-groups", "env", "-i"]
        command += [f"{name}={value}" for name, value in environment.items()]
        command += [str(CATALINA_HOME / "bin" / "catalina.sh"), "run"]
        with self.console.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.base,
            )
        deadline = started + timeout
        while time.monotonic() < deadline:
            if "Server startup in" in self._log_since(offset):
                break
            if self.process.poll() is not None:
                raise AssertionError(f"Tomcat exited at start:\n{self.tail()}")
            time.sleep(0.2)
        else:
            raise AssertionError(f"Tomcat did not start in {timeout}s:\n{self.tail()}")
        # "started" says nothing about the HTTPS connector: it must listen, or it failed
        while time.monotonic() < deadline:
            if "Failed to initialize component [Connector" in self._log_since(offset):
                raise AssertionError(f"the HTTPS connector failed:\n{self.tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError(f"the HTTPS connector does not listen:\n{self.tail()}")
        self.start_seconds.append(time.monotonic() - started)

    def _log_since(self, offset: int) -> str:
        with self.console.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def tail(self, lines: int = 40) -> str:
        text = self.console.read_text(errors="replace") if self.console.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)  # the group we started: java and nothing else
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def configure(self, server_xml: str) -> None:
        """Replace server.xml (owned by tomcat, as the instance's files are)."""
        path = self.base / "conf" / "server.xml"
        path.write_text(server_xml)
        tomcat = pwd.getpwnam("tomcat")
        os.chown(path, tomcat.pw_uid, tomcat.pw_gid)

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def served_chain(port: int) -> list[str]:
    """SHA-256 fingerprints of the certificates the server sends, in its order."""
    done = run_process(
        need_tool("openssl"), "s_client", "-connect", f"127.0.0.1:{port}",
        "-servername", "localhost", "-showcerts", stdin="", timeout=30,
    )  # fmt: skip
    blocks = _PEM_BLOCK.findall(done.stdout.encode())
    assert blocks, done.stdout + done.stderr
    return [
        x509.load_pem_x509_certificate(block).fingerprint(hashes.SHA256()).hex() for block in blocks
    ]


def https_get(port: int, ca_file: Path) -> tuple[bool, str]:
    """A GET over TLS that must verify against ``ca_file`` and the name localhost."""
    done = run_process(
        need_tool("openssl"), "s_client", "-connect", f"127.0.0.1:{port}",
        "-servername", "localhost", "-verify_hostname", "localhost", "-CAfile", str(ca_file),
        "-verify_return_error", "-ign_eof",
        stdin="GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", timeout=30,
    )  # fmt: skip
    text = done.stdout + done.stderr
    return ("HTTP/1.1 200" in text and PAGE in text), text
