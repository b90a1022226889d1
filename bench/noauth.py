"""fhirbill without its SMART layer (no bearer check, no AuditEvents), to show what authorization costs.

gunicorn bench.noauth:app
"""

from fhirbill import create_app

app = create_app(authorization=False)
