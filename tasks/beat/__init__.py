"""Periodic jobs run by Celery beat (schedules in celeryconfig.py), apart from the chain."""
