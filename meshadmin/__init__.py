"""Meshadmin: the control plane of an event mesh."""

from .celery import app as celery_app

__all__ = ["celery_app"]
