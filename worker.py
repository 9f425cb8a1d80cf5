"""Celery entry: ``celery -A worker worker``."""

from app import create_app

celery_app = create_app().extensions["celery"]
