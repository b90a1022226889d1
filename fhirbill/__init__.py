"""fhirbill: a FHIR R4-native medical billing server."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from flask import Flask

    from fhirbill.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """The WSGI app: wiring only (settings, logging, the Server, blueprints, error handlers)."""
    from flask import Flask

    from fhirbill import logs
    from fhirbill.api import health, http, routes
    from fhirbill.api.server import Server
    from fhirbill.settings import Settings

    settings = settings or Settings.from_env()
    logs.configure(settings.log_level)
    app = Flask(__name__, instance_path=str(settings.instance_dir.resolve()))
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["fhirbill"] = Server.build(settings)
    http.install(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(routes.bp)
    return app
