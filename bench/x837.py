"""837 throughput: claims rendered per second by `build_837` in memory, and pyx12 on the same file."""

from __future__ import annotations

import copy
import io
import itertools
import logging
import time
from datetime import datetime
from typing import Any

from bench.core import PCN_SYSTEM, Row, seed_resources
from bench.harness import BenchError, Result, measure
from fhirbill.x12 import ClaimInput, ControlNumbers, X12Config, build_837, resolver

NOW = datetime(2026, 11, 28, 12, 0)
BATCH = 100  # claims per interchange


def _vary(claim: dict[str, Any], i: int) -> dict[str, Any]:
    """A copy with its own control number and line charges (total kept equal to their sum)."""
    c = copy.deepcopy(claim)
    c["id"] = f"{claim['id']}-{i}"
    c["identifier"] = [{"system": PCN_SYSTEM, "value": f"BN{i:08d}"}]
    delta = (i % 97 + 1) / 100
    total = 0.0
    for item in c["item"]:
        qty = (item.get("quantity") or {}).get("value", 1)
        if "net" in item:
            item["net"]["value"] = round(item["net"]["value"] + delta, 2)
            if qty == 1 and "unitPrice" in item:
                item["unitPrice"]["value"] = item["net"]["value"]
            total += item["net"]["value"]
        else:
            if qty == 1:
                item["unitPrice"]["value"] = round(item["unitPrice"]["value"] + delta, 2)
            total += item["unitPrice"]["value"] * qty * item.get("factor", 1)
    if "total" in c:
        c["total"]["value"] = round(total, 2)
    return c


def claim_inputs(n: int) -> list[ClaimInput]:
    """`n` distinct billable claims (the seed claims, varied) resolving against the seed resources."""
    resources = seed_resources()
    resolve = resolver(resources)
    claims = [r for r in resources if r["resourceType"] == "Claim"]
    return [ClaimInput(_vary(claims[i % len(claims)], i), resolve) for i in range(n)]


def _pyx12(text: str) -> tuple[bool, int]:
    """Validate with pyx12 (charset B, its Python API); (ok, number of findings)."""
    import pyx12.error_handler
    import pyx12.params
    import pyx12.x12n_document

    logging.getLogger("pyx12").addHandler(logging.NullHandler())
    logging.getLogger("pyx12").propagate = False
    created: list[Any] = []
    original = pyx12.error_handler.err_handler

    class Recording(original):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            created.append(self)

    def count(node: Any) -> int:
        n = len(getattr(node, "errors", ())) + sum(len(e.errors) for e in getattr(node, "elements", ()))
        return n + sum(count(c) for c in getattr(node, "children", ()))

    param = pyx12.params.params()
    param.set("charset", "B")
    pyx12.error_handler.err_handler = Recording
    try:
        ok = pyx12.x12n_document.x12n_document(
            param=param, src_file=io.StringIO(text), fd_997=None, fd_html=None, fd_xmldoc=None
        )
    finally:
        pyx12.error_handler.err_handler = original
    return bool(ok), sum(count(e) for e in created)


def x837(seconds: float, pyx12_claims: int) -> tuple[list[Row], list[str]]:
    """build_837 claims/s on one thread; pyx12 validation speed on one file, for scale."""
    inputs = claim_inputs(2000)
    config = X12Config()
    batches = itertools.cycle(range(0, len(inputs), BATCH))
    isa = itertools.count(1)
    refused: list[str] = []

    def build() -> int:
        lo = next(batches)
        n = next(isa)
        out = build_837(inputs[lo : lo + BATCH], config, ControlNumbers(n, n, 1), NOW)
        if out.refused:
            refused.extend(f"{r.claim_id}: {r.issues[0].diagnostics}" for r in out.refused[:3])
            raise BenchError(f"{len(out.refused)} claims refused")
        return len(out.claims)

    res = measure(build, 1, seconds)
    rows = [
        Row(
            "x12",
            "-",
            f"build_837, {BATCH} claims per interchange, 1 thread",
            "claims/s",
            res,
            None,
            ">= 5,000/s",
        )
    ]

    text = build_837(inputs[:pyx12_claims], config, ControlNumbers(1, 1, 1), NOW).text
    segs = text.count("~")
    t0 = time.perf_counter()
    ok, findings = _pyx12(text)
    secs = time.perf_counter() - t0
    py = Result(ops=1, units=pyx12_claims, seconds=secs, latencies=[secs])
    op = f"pyx12 validate {pyx12_claims} claims ({segs:,} segments, {segs / secs:,.0f} seg/s, {findings} findings)"
    rows.append(Row("x12", "-", op, "claims/s", py, None, "for scale"))
    notes = refused[:5]
    if findings != 1:
        notes.append(f"pyx12 reported {findings} findings (1 expected: ISA11 under charset B), ok={ok}")
    return rows, notes


def batch_from_database(n: int, work: Any) -> tuple[list[Row], list[str]]:
    """`fhirbill x12 837 --payer ...` on `n` stored claims of one payer, SQLite, timed end to end."""
    import subprocess
    import sys
    from pathlib import Path

    from fhirbill.api.server import Server
    from fhirbill.settings import Settings
    from fhirbill.store import resources as repo
    from fhirbill.store.db import write_tx
    from fhirbill.store.migrate import upgrade

    folder = Path(work) / "x12batch"
    settings = Settings(instance_dir=folder, database_url=f"sqlite:///{folder}/batch.db", log_level="WARNING")
    srv = Server.build(settings)
    upgrade(srv.engine)
    resources = seed_resources()
    with write_tx(srv.engine) as conn:
        for r in resources:
            repo.create(conn, r, srv.indexer, res_id=r["id"], method="PUT")
        acme = [r for r in resources if r["resourceType"] == "Claim" and "acme" in r["insurer"]["reference"]]
        for i in range(n):
            c = _vary(acme[i % len(acme)], i)
            c.pop("id")
            repo.create(conn, c, srv.indexer)
    srv.engine.dispose()
    out = folder / "batch.x12"
    env = {
        "FHIRBILL_INSTANCE_DIR": str(folder),
        "FHIRBILL_DATABASE_URL": settings.database_url,
        "FHIRBILL_LOG_LEVEL": "WARNING",
        "PATH": "",
    }
    t0 = time.perf_counter()
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "fhirbill"),
            "x12",
            "837",
            "--payer",
            "Organization/acme-health-plan",
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    secs = time.perf_counter() - t0
    notes = [] if done.returncode == 0 else [f"x12 837 batch failed: {done.stderr.strip()[-300:]}"]
    sent = out.read_text().count("CLM*") if out.exists() else 0
    res = Result(ops=1, units=sent, seconds=secs, latencies=[secs])
    op = f"fhirbill x12 837 --payer: {sent:,} stored claims to a file in {secs:.1f} s (SQLite)"
    return [Row("x12", "sqlite", op, "claims/s", res, None, f"{n:,} in < 10 s")], notes
