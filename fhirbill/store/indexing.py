"""Search-index upkeep: the indexer used on every write, and `db reindex`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import Engine, select

from fhirbill.fhir.indexer import IndexPlan
from fhirbill.fhir.searchparams import SearchParamRegistry
from fhirbill.store.db import write_tx
from fhirbill.store.resources import IndexRows, write_index
from fhirbill.store.tables import INDEX_TABLES, resources


def make_indexer(params: SearchParamRegistry, base_url: str) -> Callable[[dict[str, Any]], IndexRows]:
    """A function from a resource to its index rows, per the registry's definitions."""
    plans: dict[str, IndexPlan] = {}

    def index(resource: dict[str, Any]) -> IndexRows:
        rt = resource["resourceType"]
        defs = params.indexed_for_type(rt)
        plan = plans.get(rt)
        if plan is None or plan.params is not defs:  # the registry's dict is new after a definition is added
            plan = plans[rt] = IndexPlan(defs)
        rows = plan.extract(resource, base_url)
        return {kind: getattr(rows, kind) for kind in INDEX_TABLES}

    return index


def reindex(
    engine: Engine,
    indexer: Callable[[dict[str, Any]], IndexRows],
    res_type: str | None = None,
    batch: int = 500,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Rebuild the index rows of every live resource (of one type); returns how many."""
    done = 0
    last = 0
    while True:
        q = select(resources.c.rid, resources.c.res_type, resources.c.content).where(
            resources.c.deleted.is_(False), resources.c.rid > last
        )
        if res_type:
            q = q.where(resources.c.res_type == res_type)
        with write_tx(engine) as conn:
            rows = conn.execute(q.order_by(resources.c.rid).limit(batch)).all()
            for r in rows:
                write_index(conn, r.rid, r.res_type, indexer(orjson.loads(r.content)), fresh=False)
        if not rows:
            return done
        last = rows[-1].rid
        done += len(rows)
        if progress:
            progress(len(rows))
