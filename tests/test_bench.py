"""The benchmark still measures what it claims: its baseline builds certserver's profile.

No timing is asserted; the script refuses to run when its hand-built baseline certificates
differ from certserver's (subject, validity, extensions, hash), and that is what this checks.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .conftest import run_process

BENCH = Path(__file__).parent.parent / "bench" / "bench_issuance.py"


def test_the_benchmark_runs_and_its_baseline_matches_the_profile() -> None:
    done = run_process(sys.executable, str(BENCH), "--quick", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "deployment ec-p256" in done.stdout and "issue rsa-2048" in done.stdout


def test_the_crl_benchmark_runs() -> None:
    bench = Path(__file__).parent.parent / "bench" / "bench_crl.py"
    done = run_process(sys.executable, str(bench), "--quick", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "certserver build_crl" in done.stdout and "revoke to new CRL" in done.stdout
