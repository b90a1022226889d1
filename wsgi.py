"""WSGI entry point: gunicorn wsgi:app."""

from fhirbill import served_app

app = served_app()
