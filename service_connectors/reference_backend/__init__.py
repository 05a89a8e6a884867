"""The reference backend: a small, separate HTTP service standing in for a department.

It lets the gateway be developed and tested end to end against a real server (issuing
references, enforcing idempotency, moving applications through stages) instead of mocks.
Run it with ``python -m service_connectors.reference_backend --dev``.
"""

from service_connectors.reference_backend.app import create_app

__all__ = ["create_app"]
