"""WSGI entry point: gunicorn wsgi:app."""

from fhirbill import create_app

app = create_app()
