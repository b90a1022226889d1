"""fhirbill without its SMART layer (no bearer check, no AuditEvents), to show what authorization costs.

Served like wsgi.py (`served_app`), so that the two differ only in that layer.

gunicorn bench.noauth:app
"""

from fhirbill import served_app

app = served_app(authorization=False)
