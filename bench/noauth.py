"""fhirbill without its SMART layer (no bearer check, no AuditEvents), to show what authorization costs.

Served like wsgi.py (warmed, collector frozen), so that the two differ only in that layer.

gunicorn bench.noauth:app
"""

import gc

from fhirbill import create_app

app = create_app(authorization=False)
app.extensions["fhirbill"].warm()
gc.freeze()
