"""JSON logs, one object per line. Never a body, a query value, a token or a secret."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter


def configure(level: str) -> None:
    """Send fhirbill's logs to stderr as JSON and silence access logs that print query strings."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("fhirbill")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # werkzeug's and gunicorn's access logs include the full URL, query values included.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("gunicorn.access").disabled = True
