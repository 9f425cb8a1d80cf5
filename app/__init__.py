"""Bindery's Flask application factory."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from celery import Celery
from flask import Flask

from app.config import load_config


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: config validated first, then extensions, Celery, blueprints."""
    app = Flask(__name__, template_folder="../templates")
    app.config["BINDERY"] = load_config(overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from app import build_api, errors_view, health, pages
    from app.extensions import engine, events, redis_client

    redis_client.init_app(app)
    engine.init_app(app)
    app.register_blueprint(events)
    celery_init_app(app)
    errors_view.init_app(app)
    app.register_blueprint(build_api.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(health.bp)
    return app


def celery_init_app(app: Flask) -> Celery:
    """Celery bound to this app, as in Flask's Celery pattern; tasks run in its app context."""
    import celeryconfig
    from tasks.base import BinderyTask

    celery_app = Celery(app.name, task_cls=BinderyTask)
    celery_app.config_from_object(celeryconfig)
    celery_app.conf.update(celeryconfig.from_settings(app.config["BINDERY"]))
    celery_app.flask_app = app  # type: ignore[attr-defined]
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
