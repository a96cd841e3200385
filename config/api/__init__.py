"""API plumbing every app's REST endpoints share: the one error body, the
OpenAPI schema class, pagination, throttles and the base views.

It lives in the project package, as NetBox keeps its shared API plumbing in
``netbox/api/``, so that no app reaches into another app's views for it
(docs/decisions/0002-shared-web-plumbing.md).
"""
