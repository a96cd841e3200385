"""Django project package.

Named ``config`` rather than ``platform``: a top-level ``platform`` package
would shadow the standard library module that uuid, Django and boto3 import.
"""
from .celery_app import app as celery_app

__all__ = ("celery_app",)
