"""Bindery's Flask application factory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery import Celery
from flask import Flask

from app.config import load_config
from app.logging_setup import configure_logging


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: config validated first, then extensions, Celery, blueprints."""
    app = Flask(__name__, template_folder="../templates", static_folder="../static")
    app.config["BINDERY"] = load_config(overrides)
    configure_logging(app.config["BINDERY"])

    # Views and the task machinery are imported when an app is built, not when ``app`` is:
    # ``from app.errors import ...`` in a worker or a tool loads no view.
    from app import auth, build_api, build_logs, cors, errors_view, health, metrics, pages, request_limits, where_api
    from app import hooks as push_hooks
    from app.extensions import engine, events, redis_client
    from app.repoproviders import bp as repoproviders_bp

    redis_client.init_app(app)
    engine.init_app(app)
    app.register_blueprint(events)
    celery_init_app(app)
    errors_view.init_app(app)
    request_limits.init_app(app)
    auth.init_app(app)  # the session and the hub's login, with auth_enabled
    cors.init_app(app)
    app.register_blueprint(build_api.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(where_api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(build_logs.bp)
    app.register_blueprint(push_hooks.bp)
    app.register_blueprint(repoproviders_bp)
    metrics.init_app(app)
    return app


def celery_init_app(app: Flask) -> Celery:
    """Celery bound to this app, as in Flask's Celery pattern; tasks run in its app context."""
    import celeryconfig  # (imported here for the reason given in create_app)
    from tasks import worker_signals
    from tasks.base import BinderyTask

    celery_app = Celery(app.name, task_cls=BinderyTask)
    celery_app.config_from_object(celeryconfig)
    celery_app.conf.update(celeryconfig.from_settings(app.config["BINDERY"]))
    celery_app.flask_app = app  # type: ignore[attr-defined]
    worker_signals.connect(celery_app)
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
