"""Request dependencies: the app's context, the two credentials and the idempotency key."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status

from service_connectors.catalogue import Catalogue
from service_connectors.reference_backend.store import ApplicationStore

MAX_IDEMPOTENCY_KEY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class BackendContext:
    """Everything a request needs, built once per app (no module globals, so tests can run
    several backends side by side)."""

    store: ApplicationStore
    catalogue: Catalogue
    api_key: str
    operator_token: str
    # Where to push stage changes (the gateway), signed with the shared secret.
    webhook_url: str | None = None
    webhook_secret: str | None = None


async def backend_context(request: Request) -> BackendContext:
    context: BackendContext = request.app.state.backend
    return context


Context = Annotated[BackendContext, Depends(backend_context)]


def _same_secret(given: str | None, expected: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())


async def require_api_key(
    context: Context, authorization: Annotated[str | None, Header()] = None
) -> None:
    """The gateway's credential: ``Authorization: Bearer <api key>``."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not _same_secret(token.strip(), context.api_key):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong API key",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def require_operator(
    context: Context,
    operator_token: Annotated[str | None, Header(alias="X-Operator-Token")] = None,
) -> None:
    """The department clerk's credential, distinct from the gateway's API key."""
    if not _same_secret(operator_token, context.operator_token):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong operator token")


async def idempotency_key(
    key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> str:
    """Required: without it a retried submit could file the application twice."""
    key = (key or "").strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"an Idempotency-Key header of 1-{MAX_IDEMPOTENCY_KEY_LENGTH} characters is required",
        )
    return key


IdempotencyKey = Annotated[str, Depends(idempotency_key)]
