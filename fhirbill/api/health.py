"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from fhirbill.store.migrate import at_head

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process is alive (no I/O)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """The database answers and its schema is at the newest migration."""
    engine = current_app.extensions["fhirbill"].engine
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        migrated = at_head(engine)
    except SQLAlchemyError as exc:
        return jsonify(status="unavailable", database="unreachable", error=type(exc).__name__), 503
    if not migrated:
        return jsonify(status="unavailable", database="ok", migrations="behind"), 503
    return jsonify(status="ok", database="ok", migrations="head")
