"""`make bench`: print fhirbill's figures beside a floor measured in the same run.

    .venv/bin/python -m bench.run [--sqlite-only] [--seconds N] [--skip-837] [--skip-transactions] [--scale]

Not a test: it prints figures and ratios and fails only by crashing. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import core, floor
from bench.harness import (
    BIN,
    HOST,
    ROOT,
    Http,
    authorize,
    fhirbill,
    free_port,
    gunicorn_args,
    pg_analyze,
    pg_available,
    pg_create,
    pg_drop,
    start,
    stop,
)

PG_DB, PG_FLOOR_DB = "fhirbill_bench", "fhirbill_bench_floor"


def run_database(kind: str, args: argparse.Namespace, work: Path) -> tuple[list[core.Row], list[str]]:
    """Migrate, seed and serve fhirbill and the floor on one database kind; run the HTTP sections."""
    inst = work / kind
    inst.mkdir()
    if kind == "sqlite":
        url, floor_url = f"sqlite:///{inst}/fhirbill.db", f"sqlite:///{inst}/floor.db"
    else:
        url, floor_url = pg_create(PG_DB), pg_create(PG_FLOOR_DB)
    label = "SQLite" if kind == "sqlite" else "PostgreSQL"
    fb_port, floor_port = free_port(), free_port()
    env = {
        "FHIRBILL_INSTANCE_DIR": str(inst),
        "FHIRBILL_DATABASE_URL": url,
        "FHIRBILL_BASE_URL": f"http://{HOST}:{fb_port}/fhir",
        "FHIRBILL_LOG_LEVEL": args.log_level,
    }
    procs = []
    rows: list[core.Row] = []
    notes: list[str] = []
    try:
        print(f"\n[{label}] migrating and seeding ...", flush=True)
        fhirbill("db", "upgrade", env=env)
        fhirbill("seed", "--json", env=env)
        floor.prepare(floor_url)
        w, t = str(args.workers), str(args.server_threads)
        serve = [
            str(BIN / "fhirbill"),
            "serve",
            "--host",
            HOST,
            "--port",
            str(fb_port),
            "--workers",
            w,
            "--threads",
            t,
        ]
        procs.append(start(serve, env, inst / "fhirbill.log", "/readyz", fb_port))
        floor_cmd = gunicorn_args("bench.floor:app", floor_port, args.workers, args.server_threads)
        procs.append(
            start(floor_cmd, {"FLOOR_DATABASE_URL": floor_url}, inst / "floor.log", "/healthz", floor_port)
        )
        fb, fl = Http(fb_port), Http(floor_port)
        notes.append(f"{label}: fhirbill requests carry {authorize(fb, url)}")
        servers = [("", fb)]
        if not args.no_authorization_off:
            for name, factory, log in (
                (core.AUTH_OFF, "bench.noauth:build(audit=False)", "noauth.log"),
                (core.AUTH_OFF_AUDITED, "bench.noauth:build(audit=True)", "noauth-audited.log"),
            ):
                off_port = free_port()
                off_cmd = gunicorn_args(factory, off_port, args.workers, args.server_threads)
                env_off = {**env, "FHIRBILL_BASE_URL": f"http://{HOST}:{off_port}/fhir"}
                procs.append(start(off_cmd, env_off, inst / log, "/readyz", off_port))
                servers.append((name, Http(off_port)))

        print(f"[{label}] REST core ...", flush=True)
        analyze = (lambda: pg_analyze(url, floor_url)) if kind == "postgresql" else None
        rows += core.rest_core(servers, fl, label, args.threads, args.seconds, args.creates, analyze)
        if not args.skip_transactions:
            print(f"[{label}] Synthea transactions ...", flush=True)
            rows += core.transactions(fb, fl, label, args.seconds, servers=(procs[0], procs[1]))
        if args.scale:
            print(
                f"[{label}] bulk-loading {args.scale_n:,} Claims and EOBs for search at scale ...", flush=True
            )
            notes.append(
                f"{label}: "
                + core.load_scale(url, inst, env["FHIRBILL_BASE_URL"], args.scale_n, args.scale_patients)
            )
            rows += core.scale_search(
                fb, label, args.threads, args.seconds, args.scale_patients, args.scale_n
            )
        for row in rows:
            if row.fb.drain >= 1:
                notes.append(
                    f"{label} {row.op}: the machine stayed busy {row.fb.drain:.1f} s after the last "
                    "response (deferred work such as batched AuditEvents, WAL checkpoints or autovacuum; not in the figure)"
                )
            if row.floor and row.fb.cpu_per_unit and row.floor.cpu_per_unit:
                notes.append(
                    f"{label} {row.op}: server CPU per resource (the apps' own processes"
                    f"{', not PostgreSQL' if kind == 'postgresql' else ''}): fhirbill "
                    f"{row.fb.cpu_per_unit:,.0f} us, floor {row.floor.cpu_per_unit:,.0f} us "
                    f"(ratio {row.floor.cpu_per_unit / row.fb.cpu_per_unit:.2f}); cores busy: fhirbill "
                    f"{row.fb.cpu / row.fb.seconds:.2f}, floor {row.floor.cpu / row.floor.seconds:.2f}"
                )
            notes += [f"{label} {row.op}: {e}" for e in sorted(set(row.fb.errors))[:5]]
            if row.floor:
                notes += [f"{label} floor {row.op}: {e}" for e in sorted(set(row.floor.errors))[:3]]
    finally:
        for proc in procs:
            stop(proc)
        if kind == "postgresql":
            pg_drop(PG_DB)
            pg_drop(PG_FLOOR_DB)
    return rows, notes


def _fmt(x: float | None, spec: str = ",.0f") -> str:
    return "-" if x is None or x != x else format(x, spec)


def _lat(r: core.Row) -> tuple[str, str]:
    fb = f"{_fmt(r.fb.p50, '.1f')} / {_fmt(r.fb.p99, '.1f')}"
    fl = f"{_fmt(r.floor.p50, '.1f')} / {_fmt(r.floor.p99, '.1f')}" if r.floor else ""
    return fb, fl


def print_table(title: str, rows: list[core.Row]) -> None:
    """One readable plain-text table per section."""
    if not rows:
        return
    print(f"\n== {title}")
    head = f"{'db':<11} {'operation':<66} {'fhirbill':>10} {'p50/p99 ms':>15} {'floor':>10} {'p50/p99 ms':>15} {'ratio':>6}  target"
    print(head)
    print("-" * len(head))
    for r in rows:
        fb_lat, fl_lat = _lat(r)
        floor_rate = _fmt(r.floor.rate) if r.floor else ""
        print(
            f"{r.db:<11} {r.op:<66} {_fmt(r.fb.rate):>10} {fb_lat:>15} {floor_rate:>10} {fl_lat:>15} "
            f"{_fmt(r.ratio, '.2f'):>6}  {r.target}  ({r.unit}; {r.fb.ops} calls, {len(r.fb.errors)} errors, drain {r.fb.drain:.1f} s)"
        )


def markdown(rows: list[core.Row], args: argparse.Namespace, notes: list[str]) -> str:
    """The block for the README."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Measured {when} by `make bench` on {os.cpu_count()} CPUs (shared), Python {platform.python_version()}; "
        f"gunicorn {args.workers} workers x {args.server_threads} threads for fhirbill and the floor, "
        f"{args.threads} client threads on the same machine, {args.seconds:g} s per measurement.",
        "",
        "| section | db | operation | fhirbill | p50 / p99 ms | floor | p50 / p99 ms | ratio | target |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        fb_lat, fl_lat = _lat(r)
        floor_rate = f"{_fmt(r.floor.rate)} {r.unit}" if r.floor else ""
        lines.append(
            f"| {r.section} | {r.db} | {r.op} | {_fmt(r.fb.rate)} {r.unit} | {fb_lat} | {floor_rate} | "
            f"{fl_lat} | {_fmt(r.ratio, '.2f')} | {r.target} |"
        )
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=6.0, help="per measurement (default 6)")
    p.add_argument("--threads", type=int, default=4, help="client threads (default 4)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers, both apps (default 2)")
    p.add_argument("--server-threads", type=int, default=4, help="gunicorn threads per worker (default 4)")
    p.add_argument("--creates", type=int, default=1500, help="at most this many Claim creates (default 1500)")
    p.add_argument(
        "--log-level", default="INFO", help="FHIRBILL_LOG_LEVEL of the served fhirbill (default INFO)"
    )
    p.add_argument(
        "--no-authorization-off",
        action="store_true",
        help="skip the extra REST runs of fhirbill built with create_app(authorization=False)",
    )
    p.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    p.add_argument(
        "--batch-claims", type=int, default=10_000, help="claims in the 837 database batch (default 10000)"
    )
    p.add_argument("--skip-837", action="store_true", help="skip the 837 section")
    p.add_argument("--skip-transactions", action="store_true", help="skip the Synthea transaction section")
    p.add_argument(
        "--scale", action="store_true", help="also search at scale (slow: bulk-loads Claims and EOBs)"
    )
    p.add_argument(
        "--scale-n", type=int, default=100_000, help="Claims and EOBs each for --scale (default 100,000)"
    )
    p.add_argument(
        "--scale-patients", type=int, default=1000, help="Patients they spread over (default 1000)"
    )
    p.add_argument(
        "--pyx12-claims", type=int, default=200, help="claims in the file pyx12 validates (default 200)"
    )
    args = p.parse_args(argv)

    started = time.monotonic()
    rows: list[core.Row] = []
    notes: list[str] = []
    kinds = ["sqlite"]
    if not args.sqlite_only:
        if pg_available():
            kinds.append("postgresql")
        else:
            notes.append("PostgreSQL at 127.0.0.1:5432 did not answer: skipped")
    work = Path(tempfile.mkdtemp(prefix="fhirbill-bench-"))
    try:
        for kind in kinds:
            r, n = run_database(kind, args, work)
            rows += r
            notes += n
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not args.skip_837:
        from bench.x837 import batch_from_database, x837

        print("\n[837] building and validating ...", flush=True)
        r, n = x837(args.seconds, args.pyx12_claims)
        rows += r
        notes += n
        print(f"[837] a {args.batch_claims:,}-claim batch from the database ...", flush=True)
        batch_dir = Path(tempfile.mkdtemp(prefix="fhirbill-bench-x12-"))
        try:
            r, n = batch_from_database(args.batch_claims, batch_dir)
        finally:
            shutil.rmtree(batch_dir, ignore_errors=True)
        rows += r
        notes += n

    print_table(
        "REST core: fhirbill vs the floor app (targets: read >= 0.8, create >= 0.4)",
        [r for r in rows if r.section == "rest"],
    )
    print_table(
        "Cost of SMART authorization: the authorized read vs the same app without it (target >= 0.85)",
        [r for r in rows if r.section == "smart"],
    )
    print_table(
        "Transaction Bundles: POST /fhir vs one INSERT transaction per bundle (target >= 0.3)",
        [r for r in rows if r.section == "transaction"],
    )
    print_table(
        "Search at scale (target p99 < 50 ms for a 20-entry page)", [r for r in rows if r.section == "scale"]
    )
    print_table(
        "837P/837I rendering in memory (target >= 5,000 claims/s on one core)",
        [r for r in rows if r.section == "x12"],
    )
    for note in notes:
        print(f"note: {note}")

    md = markdown(rows, args, notes)
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "latest.md").write_text(md + "\n")
    print(f"\n---- Markdown (also in bench-results/latest.md) ----\n\n{md}\n")
    print(f"bench finished in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
