"""Celery tasks: one module per chain step, plus the lock and the backends they call."""
