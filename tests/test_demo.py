"""``certserver demo``, run as a user runs it: the installed command, in a fresh home."""

from __future__ import annotations

import re
from pathlib import Path

from .conftest import Cli, certserver_script, env_for, run_process


def test_the_demo_shows_accepted_and_refused_connections(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = run_process(certserver_script(), "demo", env=env_for(home), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    ccid = re.search(r"deployment demo \(CCID ([0-9a-f-]{36})\)", lines[0])
    assert ccid, lines[0]
    spiffe = f"spiffe://{ccid.group(1)}"
    text = done.stdout
    assert re.search(
        rf"cco of demo\s+accepted\s+{spiffe}/cco .*verified the server as {spiffe}/ccm", text
    )
    assert re.search(rf"gua of demo\s+accepted\s+{spiffe}/gua", text)
    assert re.search(r"esb_rabbit of demo\s+refused\s+component-not-allowed", text)
    assert re.search(r"cco of elsewhere\s+refused\s+unknown-ca", text)
    assert "Every connection went as the certificates promise" in text
    # nothing is left behind: no store in the user's home, no files in the working folder
    assert not home.exists()
    assert list(tmp_path.iterdir()) == []


def test_the_demo_with_a_deployment_of_the_store(run: Cli, out_dir: Path) -> None:
    assert (
        run(
            "deployment", "create", "mine", "--host", "all=localhost", "--out", str(out_dir)
        ).exit_code
        == 0
    )
    done = run("demo", "--deployment", "mine")
    assert done.exit_code == 0, done.output
    assert "cco of mine" in done.output and "accepted" in done.output
    missing = run("demo", "--deployment", "nobody")
    assert missing.exit_code == 1
    assert (
        missing.output.strip().splitlines()[-1] == "certserver: error: no deployment named nobody"
    )
