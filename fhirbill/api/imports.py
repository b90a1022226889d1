"""`fhirbill import` and `fhirbill seed`: files of resources, Bundles and NDJSON, through the API's code path.

Transaction Bundles run whole through `bundles.transaction`; other Bundles, single resources and
NDJSON lines are written one resource at a time (PUT when they carry an id, POST otherwise), so
memory stays bounded on large NDJSON files and one bad line does not stop the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from fhirbill.api import bundles
from fhirbill.api import interactions as ia
from fhirbill.api.server import Server
from fhirbill.fhir.errors import FHIRError
from fhirbill.store.db import write_tx


class Summary(dict[str, Any]):
    """created / updated / unchanged / failed counts plus the first errors."""

    def __init__(self) -> None:
        super().__init__(created=0, updated=0, unchanged=0, failed=0, errors=[])

    def count(self, result: ia.Result | None) -> None:
        if result is None:
            return
        if not result.changed:
            self["unchanged"] += 1
        elif result.status == 201:
            self["created"] += 1
        else:
            self["updated"] += 1

    def fail(self, source: str, exc: FHIRError, weight: int = 1) -> None:
        self["failed"] += weight
        if len(self["errors"]) < 1000:
            self["errors"].append(
                {
                    "source": source,
                    "status": exc.status,
                    "diagnostics": "; ".join(i.diagnostics for i in exc.issues),
                }
            )


def _ndjson(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield f"{path.name}:{n}", orjson.loads(line)
                except orjson.JSONDecodeError:
                    yield f"{path.name}:{n}", FHIRError.of(400, "structure", "Line is not valid JSON.")


def write_one(srv: Server, data: Any) -> ia.Result:
    """Store one resource: PUT to its id when it has one, otherwise create."""
    if not isinstance(data, dict):
        raise FHIRError.of(400, "structure", "Not a JSON object.")
    checked = ia.check(srv, data, None)
    with write_tx(srv.engine) as conn:
        if data.get("id"):
            return ia.update(srv, conn, data["resourceType"], data["id"], checked)
        return ia.create(srv, conn, checked)


def import_paths(srv: Server, paths: list[Path], *, progress: bool = True) -> Summary:
    """Import files; returns the summary (never raises for bad content)."""
    summary = Summary()
    bar = tqdm(total=None, unit="res", disable=not progress, file=None, leave=False)
    try:
        for path in paths:
            if path.suffix.lower() in (".ndjson", ".jsonl"):
                for source, data in _ndjson(path):
                    _one(srv, summary, source, data)
                    bar.update(1)
                continue
            try:
                data = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError as exc:
                summary.fail(path.name, FHIRError.of(400, "structure", f"Not valid JSON: {exc.msg}."))
                continue
            if (
                isinstance(data, dict)
                and data.get("resourceType") == "Bundle"
                and data.get("type") == "transaction"
            ):
                _transaction(srv, summary, path.name, data)
                bar.update(len(data.get("entry") or []))
            elif (
                isinstance(data, dict)
                and data.get("resourceType") == "Bundle"
                and data.get("type") != "document"
            ):
                for i, e in enumerate(data.get("entry") or []):
                    _one(srv, summary, f"{path.name}#entry[{i}]", (e or {}).get("resource"))
                    bar.update(1)
            else:
                _one(srv, summary, path.name, data)
                bar.update(1)
    finally:
        bar.close()
    return summary


def _one(srv: Server, summary: Summary, source: str, data: Any) -> None:
    if isinstance(data, FHIRError):
        summary.fail(source, data)
        return
    try:
        summary.count(write_one(srv, data))
    except FHIRError as exc:
        summary.fail(source, exc)


def _transaction(srv: Server, summary: Summary, source: str, data: dict[str, Any]) -> None:
    raw = data.get("entry") or []
    try:
        if len(raw) > srv.settings.max_bundle_entries:
            raise FHIRError.of(413, "too-costly", f"More than {srv.settings.max_bundle_entries} entries.")
        entries = [bundles.parse_entry(i, e) for i, e in enumerate(raw)]
        bundles.transaction(srv, entries)
    except FHIRError as exc:
        summary.fail(source, exc, weight=len(raw) or 1)
        return
    for en in entries:
        summary.count(en.outcome)
