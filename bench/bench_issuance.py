"""Benchmark certserver's certificate issuance against plain ``cryptography``.

Two comparisons, each run against its baseline in the same process, rounds interleaved:

1. Component certificates per second (ec-p256, rsa-2048):
   ``CertificateAuthority.issue(...)`` versus an ``x509.CertificateBuilder`` that builds and
   signs the very same certificate by hand (same subject, validity, extensions and hash;
   random serial). Keys are made before the timed loop. Ratio = certserver rate / baseline
   rate; target >= 0.9.
2. Whole deployments (ec-p256, rsa-2048): ``CertServer.create_deployment(...)`` on a fresh
   temporary ``CERTSERVER_HOME`` (SQLite store, the zip written to a temporary directory,
   one warm-up create, store opening not counted) versus the cryptographic work alone done
   with ``cryptography``: CA key, self-signed CA certificate, six component keys and six
   leaves. Ratio = certserver time / baseline time; target: an ec-p256 deployment < 20 ms.

Each figure is the median over many short rounds of the per-operation time (the fastest
and slowest round are printed beside it); each ratio is the median of the ratios within a
round, where both sides ran back to back, which cancels most of the drift of a noisy host.
Before timing, the script checks that the baseline certificates carry exactly the subject,
validity, extensions and hash that certserver produces. Nothing is asserted about speed:
the script prints a table and exits 0.

Run it from the project root::

    .venv/bin/python bench/bench_issuance.py            # full run, well under a minute
    .venv/bin/python bench/bench_issuance.py --quick    # a few seconds
    .venv/bin/python bench/bench_issuance.py --profile  # also cProfile an ec-p256 deployment

``--dir`` puts the temporary store and packages on another file system (the store and the
zip are fsync'ed, so the disk matters for whole deployments).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import ipaddress
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certserver.authority import CertificateAuthority
from certserver.config import Settings
from certserver.hosts import Host
from certserver.identity import Ccid, Component, DeploymentName, Identity
from certserver.keys import KeySpec, PrivateKey, PublicKey
from certserver.profiles import COMPONENT_VALIDITY_DAYS, DEFAULT_ORGANIZATION
from certserver.service import CertServer, CreateRequest

SPECS = (KeySpec.EC_P256, KeySpec.RSA_2048)
HOSTS = (Host.parse("localhost"), Host.parse("127.0.0.1"))
ORG = DEFAULT_ORGANIZATION
BACKDATE = dt.timedelta(minutes=5)  # certserver's profile; the baseline spells it out again
CA_DAYS = 3650
DEPLOYMENT_TARGET_MS = 20.0
ISSUE_TARGET_RATIO = 0.9


@dataclass(frozen=True)
class Size:
    """How often to repeat one measurement: ``rounds`` rounds of ``ops`` operations."""

    ops: int
    rounds: int

    def __str__(self) -> str:
        return f"{self.rounds}x{self.ops}"


@dataclass(frozen=True)
class Plan:
    issue: dict[KeySpec, Size]
    deploy: dict[KeySpec, Size]
    key_pool: dict[KeySpec, int]  # public keys made beforehand, cycled through by issue


FULL = Plan(
    issue={KeySpec.EC_P256: Size(200, 21), KeySpec.RSA_2048: Size(60, 21)},
    deploy={KeySpec.EC_P256: Size(10, 21), KeySpec.RSA_2048: Size(2, 9)},
    key_pool={KeySpec.EC_P256: 256, KeySpec.RSA_2048: 16},
)
QUICK = Plan(
    issue={KeySpec.EC_P256: Size(100, 7), KeySpec.RSA_2048: Size(20, 7)},
    deploy={KeySpec.EC_P256: Size(5, 7), KeySpec.RSA_2048: Size(1, 3)},
    key_pool={KeySpec.EC_P256: 64, KeySpec.RSA_2048: 4},
)


# -- the baseline: plain cryptography, no certserver code ----------------------------------


def generate_key(spec: KeySpec) -> PrivateKey:
    if spec is KeySpec.RSA_2048:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _key_usage(*, ca: bool, key_encipherment: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _name(org: str, unit: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def baseline_ca(key: PrivateKey, name: str, ccid: str, now: dt.datetime) -> x509.Certificate:
    """A self-signed CA certificate with certserver's CA profile, built by hand."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG.value),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ccid),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "deployment CA"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True, key_encipherment=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )


def baseline_leaf(
    ca_key: PrivateKey,
    ca_subject: x509.Name,
    aki: x509.AuthorityKeyIdentifier,
    public_key: PublicKey,
    ccid: str,
    folder: str,
    now: dt.datetime,
) -> x509.Certificate:
    """A component certificate with certserver's leaf profile, built by hand."""
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    san = x509.SubjectAlternativeName(
        [
            x509.UniformResourceIdentifier(f"spiffe://{ccid}/{folder}"),
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
    )
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    return (
        x509.CertificateBuilder()
        .subject_name(_name(ORG.value, ccid, folder))
        .issuer_name(ca_subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=COMPONENT_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False, key_encipherment=is_rsa), critical=True)
        .add_extension(eku, critical=False)
        .add_extension(san, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def baseline_deployment(spec: KeySpec, name: str, now: dt.datetime) -> list[x509.Certificate]:
    """The cryptographic work of one deployment: 7 keys, a CA and 6 leaves."""
    ccid = str(uuid.uuid4())
    ca_key = generate_key(spec)
    ca_cert = baseline_ca(ca_key, name, ccid, now)
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    leaves = [ca_cert]
    for component in Component:
        key = generate_key(spec)
        leaves.append(
            baseline_leaf(
                ca_key, ca_cert.subject, aki, key.public_key(), ccid, component.folder, now
            )
        )
    return leaves


# -- checking that both sides make the same certificate ------------------------------------


def _profile_of(cert: x509.Certificate) -> tuple[object, ...]:
    return (
        cert.version,
        cert.subject,
        cert.issuer,
        cert.not_valid_before_utc,
        cert.not_valid_after_utc,
        type(cert.signature_hash_algorithm),
        cert.signature_algorithm_oid,
        cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
        list(cert.extensions),  # oid, criticality and value, in order
    )


def check_same(what: str, ours: x509.Certificate, theirs: x509.Certificate) -> None:
    if _profile_of(ours) != _profile_of(theirs):
        sys.exit(f"bench is broken: the baseline {what} differs from certserver's")


def check_profiles(spec: KeySpec, now: dt.datetime) -> None:
    ccid = Ccid.generate()
    name = DeploymentName("profile-check")
    ca_key = generate_key(spec)
    ca = CertificateAuthority.create(name, ccid, ORG, spec, now, key=ca_key)
    check_same(f"{spec.value} CA", ca.certificate, baseline_ca(ca_key, name.value, ccid.value, now))
    aki = ca.certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    leaf_key = generate_key(spec).public_key()
    for component in Component:
        identity = Identity(ccid, component)
        ours = ca.issue(identity, leaf_key, spec, ORG, HOSTS, now, COMPONENT_VALIDITY_DAYS)
        theirs = baseline_leaf(
            ca_key, ca.certificate.subject, aki, leaf_key, ccid.value, component.folder, now
        )
        check_same(f"{spec.value} {component.folder} leaf", ours, theirs)


# -- timing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """Seconds per operation of each round, certserver and baseline, paired by round."""

    label: str
    size: Size
    ours: list[float]
    base: list[float]

    def rate_ratio(self) -> float:
        """certserver rate / baseline rate: the median over rounds of the paired ratio."""
        return statistics.median(b / a for a, b in zip(self.ours, self.base, strict=True))

    def time_ratio(self) -> float:
        """certserver time / baseline time: the median over rounds of the paired ratio."""
        return 1 / self.rate_ratio()


def spread_ms(side: list[float]) -> str:
    return f"[{min(side) * 1000:.3g}-{max(side) * 1000:.3g}]"


def time_round(op: Callable[[int], object], ops: int, start: int) -> float:
    gc.collect()
    begin = time.perf_counter()
    for i in range(start, start + ops):
        op(i)
    return (time.perf_counter() - begin) / ops


def compare(
    label: str, size: Size, ours: Callable[[int], object], theirs: Callable[[int], object]
) -> Row:
    """Interleaved rounds, alternating which side goes first, so drift hits both alike."""
    a: list[float] = []
    b: list[float] = []
    for r in range(size.rounds):
        start = r * size.ops
        if r % 2 == 0:
            a.append(time_round(ours, size.ops, start))
            b.append(time_round(theirs, size.ops, start))
        else:
            b.append(time_round(theirs, size.ops, start))
            a.append(time_round(ours, size.ops, start))
    return Row(label, size, a, b)


# -- the two measurements -------------------------------------------------------------------


def bench_issue(spec: KeySpec, plan: Plan, now: dt.datetime) -> Row:
    ccid = Ccid.generate()
    ca = CertificateAuthority.create(DeploymentName("bench"), ccid, ORG, spec, now)
    ca_key, ca_subject = ca.key, ca.certificate.subject
    aki = ca.certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    pool = [generate_key(spec).public_key() for _ in range(plan.key_pool[spec])]
    identity = Identity(ccid, Component.CCM)
    folder = Component.CCM.folder

    def ours(i: int) -> object:
        key = pool[i % len(pool)]
        return ca.issue(identity, key, spec, ORG, HOSTS, now, COMPONENT_VALIDITY_DAYS)

    def theirs(i: int) -> object:
        key = pool[i % len(pool)]
        return baseline_leaf(ca_key, ca_subject, aki, key, ccid.value, folder, now)

    ours(0)  # warm-up
    theirs(0)
    return compare(f"issue {spec.value}", plan.issue[spec], ours, theirs)


def deployment_request(spec: KeySpec, out_dir: Path, i: int) -> CreateRequest:
    return CreateRequest(
        name=DeploymentName(f"bench-{spec.value}-{i}"),
        out_dir=out_dir,
        hosts=dict.fromkeys(Component, HOSTS),
        key_spec=spec,
    )


def bench_deployment(spec: KeySpec, plan: Plan, base_dir: str | None) -> Row:
    with tempfile.TemporaryDirectory(prefix="certserver-bench-", dir=base_dir) as tmp:
        home, out_dir = Path(tmp) / "home", Path(tmp) / "out"
        out_dir.mkdir()
        settings = Settings.from_env({"CERTSERVER_HOME": str(home)})
        with CertServer(settings) as server:
            server.create_deployment(deployment_request(spec, out_dir, -1))  # warm-up, opens store

            def ours(i: int) -> object:
                return server.create_deployment(deployment_request(spec, out_dir, i))

            def theirs(i: int) -> object:
                return baseline_deployment(spec, f"bench-{spec.value}-{i}", utc_now())

            theirs(-1)
            return compare(f"deployment {spec.value}", plan.deploy[spec], ours, theirs)


def profile_deployment(base_dir: str | None, count: int) -> None:
    spec = KeySpec.EC_P256
    with tempfile.TemporaryDirectory(prefix="certserver-bench-", dir=base_dir) as tmp:
        home, out_dir = Path(tmp) / "home", Path(tmp) / "out"
        out_dir.mkdir()
        with CertServer(Settings.from_env({"CERTSERVER_HOME": str(home)})) as server:
            server.create_deployment(deployment_request(spec, out_dir, -1))
            profiler = cProfile.Profile()
            profiler.enable()
            for i in range(count):
                server.create_deployment(deployment_request(spec, out_dir, i))
            profiler.disable()
    print(f"\ncProfile of {count} ec-p256 deployments (top 30 by cumulative time):")
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.strip_dirs().sort_stats("cumulative").print_stats(30)
    print("top 20 by internal time:")
    stats.sort_stats("tottime").print_stats(20)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


# -- output ---------------------------------------------------------------------------------


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    line = "  ".join("-" * w for w in widths)
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print(line)
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
        print("  ".join(cells))


def _deployment_verdict(spec: KeySpec, row: Row) -> str:
    if spec is not KeySpec.EC_P256:
        return "-"
    return "ok" if statistics.median(row.ours) * 1000 < DEPLOYMENT_TARGET_MS else "MISSED"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer operations and rounds")
    parser.add_argument("--profile", action="store_true", help="cProfile ec-p256 deployments")
    parser.add_argument("--dir", help="directory for the temporary store and packages")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()

    now = utc_now()
    for spec in SPECS:
        check_profiles(spec, now)

    issue_rows = [bench_issue(spec, plan, now) for spec in SPECS]
    deploy_rows = [bench_deployment(spec, plan, args.dir) for spec in SPECS]

    print_table(
        "Component certificates per second; "
        f"ratio = certserver rate / baseline rate (target >= {ISSUE_TARGET_RATIO})",
        ["measurement", "rounds x ops", "certserver", "baseline", "ratio", "target"],
        [
            [
                row.label,
                str(row.size),
                f"{1 / statistics.median(row.ours):,.0f}/s {spread_ms(row.ours)}",
                f"{1 / statistics.median(row.base):,.0f}/s {spread_ms(row.base)}",
                f"{row.rate_ratio():.3f}",
                "ok" if row.rate_ratio() >= ISSUE_TARGET_RATIO else "MISSED",
            ]
            for row in issue_rows
        ],
    )
    print_table(
        "Whole deployments, ms per deployment; ratio = certserver time / baseline time "
        f"(target: ec-p256 under {DEPLOYMENT_TARGET_MS:g} ms)",
        ["measurement", "rounds x ops", "certserver", "baseline (crypto only)", "ratio", "target"],
        [
            [
                row.label,
                str(row.size),
                f"{statistics.median(row.ours) * 1000:.2f} ms {spread_ms(row.ours)}",
                f"{statistics.median(row.base) * 1000:.2f} ms {spread_ms(row.base)}",
                f"{row.time_ratio():.2f}x",
                _deployment_verdict(spec, row),
            ]
            for spec, row in zip(SPECS, deploy_rows, strict=True)
        ],
    )
    print(
        "\nFigures: median over rounds of the per-operation time (certs/s = 1 / that); in "
        "brackets\nthe fastest and slowest round, ms per operation. Ratio: median over rounds "
        "of the\nratio within each round (both sides run back to back). Keys for 'issue' are "
        "made\nbeforehand. A certserver deployment also stores to SQLite, seals keys, builds "
        "and\nfsyncs the zip; its baseline is key generation and signing only (rsa-2048 is "
        "dominated\nby RSA's random prime search: its ratio swings by +-30 % from run to run)."
        f"\ntotal time {time.perf_counter() - started:.1f} s"
    )
    if args.profile:
        profile_deployment(args.dir, 100)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
