"""Benchmark revocation: building and signing a big CRL, revoke-to-new-CRL, and lookup.

1. A CRL of N revoked entries (default 100,000), built and signed by
   ``certserver.revocation.build_crl`` (the entry list DER-encoded in one pass), beside the
   same CRL from cryptography's builder given every entry at once (the plain one-pass
   build) and, on a tenth of the entries, the builder fed one entry at a time (quadratic;
   its time for N is extrapolated from two sizes and marked so). Each CRL is checked: the
   same entries, a valid signature. Target: N=100,000 under 1 s.
2. ``CertServer.revoke`` of one component certificate of a deployment whose CA already
   revoked R serials (default 1,000): the row written, the whole CRL made again and stored.
   Target: under 50 ms.
3. Lookup of one serial among the revocations (the store's unique index on authority and
   serial), at two table sizes: the ratio stays near 1 when there is no linear scan.

Nothing is asserted; the script prints a table and exits 0::

    .venv/bin/python bench/bench_crl.py            # about half a minute
    .venv/bin/python bench/bench_crl.py --quick    # a few seconds
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from cryptography import x509

from certserver.authority import CertificateAuthority
from certserver.config import Settings
from certserver.identity import Ccid, Component, DeploymentName
from certserver.keys import KeySpec
from certserver.profiles import DEFAULT_ORGANIZATION
from certserver.revocation import Reason, Revoked, build_crl
from certserver.service import CertServer, CreateRequest
from certserver.store.tables import authorities, revocations


def _entries(count: int, now: dt.datetime) -> list[Revoked]:
    reasons = list(Reason)
    return [Revoked(10**6 + i, now, reasons[i % len(reasons)]) for i in range(count)]


def _builder_one_pass(
    ca: CertificateAuthority, items: list[Revoked], now: dt.datetime
) -> x509.CertificateRevocationList:
    entries = []
    for item in items:
        builder = (
            x509.RevokedCertificateBuilder()
            .serial_number(item.serial)
            .revocation_date(item.revoked_at)
        )
        if item.reason is not Reason.UNSPECIFIED:
            builder = builder.add_extension(x509.CRLReason(item.reason.flag), critical=False)
        entries.append(builder.build())
    return x509.CertificateRevocationListBuilder(
        issuer_name=ca.certificate.subject,
        last_update=now,
        next_update=now + dt.timedelta(days=7),
        revoked_certificates=entries,
    ).sign(ca.key, ca.spec.signature_hash())


def _builder_one_by_one(ca: CertificateAuthority, items: list[Revoked], now: dt.datetime) -> None:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=7))
    )
    for item in items:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(item.serial)
            .revocation_date(item.revoked_at)
            .build()
        )
        builder = builder.add_revoked_certificate(entry)
    builder.sign(ca.key, ca.spec.signature_hash())


def _timed(action: object, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_build(count: int, rounds: int) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ca = CertificateAuthority.create(
        DeploymentName("bench"), Ccid.generate(), DEFAULT_ORGANIZATION, KeySpec.EC_P256, now
    )
    items = _entries(count, now)
    ours = build_crl(ca, items, 1, now)
    plain = _builder_one_pass(ca, items, now)
    assert ours.is_signature_valid(ca.key.public_key()) and len(ours) == len(plain) == count
    assert [r.serial_number for r in ours] == [r.serial_number for r in plain]
    t_ours = _timed(lambda: build_crl(ca, items, 1, now), rounds)
    t_plain = _timed(lambda: _builder_one_pass(ca, items, now), rounds)
    small, smaller = max(count // 10, 1), max(count // 20, 1)
    t_small = _timed(lambda: _builder_one_by_one(ca, items[:small], now), 1)
    t_smaller = _timed(lambda: _builder_one_by_one(ca, items[:smaller], now), 1)
    # quadratic: t(n) ~ a n^2; extrapolate from the larger size
    t_one_by_one = t_small * (count / small) ** 2
    print(f"CRL of {count:,} entries, ec-p256 CA (median of {rounds})")
    print(f"  certserver build_crl        {t_ours * 1000:9.0f} ms")
    ratio = t_ours / t_plain
    print(f"  cryptography, one pass      {t_plain * 1000:9.0f} ms   certserver/plain {ratio:.2f}x")
    print(
        f"  cryptography, one by one    {t_one_by_one * 1000:9.0f} ms   (extrapolated from"
        f" {small:,} entries: {t_small * 1000:.0f} ms; {smaller:,}: {t_smaller * 1000:.0f} ms)"
    )


def bench_revoke(existing: int, folder: Path) -> None:
    settings = Settings.from_env({"CERTSERVER_HOME": str(folder / "home")})
    with CertServer(settings) as service:
        names = []
        for i in range(3):
            name = DeploymentName(f"bench-{i}")
            service.create_deployment(CreateRequest(name=name))
            names.append(name)
        store = service._open_store(create=False)
        now = dt.datetime.now(dt.UTC)
        with store.transaction() as connection:
            authority_id = connection.scalar(sa.select(authorities.c.id).order_by(authorities.c.id))
            connection.execute(
                sa.insert(revocations),
                [
                    {
                        "authority_id": authority_id,
                        "serial": format(10**9 + i, "x"),
                        "reason": "superseded",
                        "revoked_at": now,
                    }
                    for i in range(existing)
                ],
            )
        times = []
        for component in (Component.CCO, Component.GUA, Component.MONITOR):
            start = time.perf_counter()
            service.revoke(names[0], component=component, reason=Reason.KEY_COMPROMISE)
            times.append(time.perf_counter() - start)
        median = statistics.median(times) * 1000
        print(f"revoke to new CRL, {existing:,} earlier revocations: median {median:.1f} ms")

        def lookup(serial: str) -> None:
            with store.transaction() as connection:
                connection.execute(
                    sa.select(revocations.c.id).where(
                        revocations.c.authority_id == authority_id, revocations.c.serial == serial
                    )
                ).one()

        t_big = _timed(lambda: lookup(format(10**9 + existing // 2, "x")), 50)
        with store.transaction() as connection:
            plan = " ".join(
                str(row[-1])
                for row in connection.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT id FROM revocations"
                    " WHERE authority_id = 1 AND serial = 'x'"
                )
            )
        print(
            f"lookup of one serial among {existing:,}: {t_big * 1e6:.0f} us  (SQLite plan: {plan})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count, rounds, existing = (10_000, 1, 1_000) if args.quick else (100_000, 3, 100_000)
    bench_build(count, rounds)
    with tempfile.TemporaryDirectory() as folder:
        bench_revoke(1_000, Path(folder))
        if not args.quick:
            with tempfile.TemporaryDirectory() as other:
                bench_revoke(existing, Path(other))


if __name__ == "__main__":
    main()
