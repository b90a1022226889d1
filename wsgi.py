"""WSGI entry point: gunicorn wsgi:app."""

import gc

from fhirbill import create_app

app = create_app()
app.extensions["fhirbill"].warm()
# What is alive now (models, registries, compiled plans) lives as long as the process: keep it out
# of the collector's full passes, which otherwise walked it all every few large Bundles.
gc.freeze()
