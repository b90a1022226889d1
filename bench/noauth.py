"""fhirbill without its SMART layer (no bearer check), to show what authorization costs.

Served like wsgi.py (`served_app`), so that the apps differ only in that layer:

    gunicorn 'bench.noauth:build(audit=False)'  # no authorization and no audit trail
    gunicorn 'bench.noauth:build(audit=True)'   # no authorization; every access audited
"""

from flask import Flask

from fhirbill import served_app


def build(audit: bool) -> Flask:
    """fhirbill built with `create_app(authorization=False, audit=audit)`."""
    return served_app(authorization=False, audit=audit)
