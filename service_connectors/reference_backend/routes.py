"""HTTP routes: the public forms, the gateway's API (API key) and the clerk's (operator token)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Query, Response, status

from service_connectors.catalogue import Service
from service_connectors.reference_backend.dependencies import (
    Context,
    IdempotencyKey,
    require_api_key,
    require_operator,
)
from service_connectors.reference_backend.schemas import (
    AdvanceRequest,
    ApplicationCreated,
    ApplicationDetail,
    ApplicationRequest,
    ApplicationSummary,
    ErrorList,
    FieldError,
    ServiceDescription,
)
from service_connectors.reference_backend.store import (
    IdempotencyKeyReusedError,
    TransitionRefusedError,
    UnknownApplicationError,
)
from service_connectors.reference_backend.validation import field_errors
from service_connectors.webhook_signing import signed_headers

log = logging.getLogger(__name__)


class InvalidFormError(Exception):
    """Answered as 422 ``{"errors": [{field, message}]}`` by the app's handler."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(f"{len(errors)} field error(s)")
        self.errors = errors


public = APIRouter()
gateway = APIRouter(dependencies=[Depends(require_api_key)])
operator = APIRouter(prefix="/operator", dependencies=[Depends(require_operator)])

_REJECTED: dict[int | str, dict[str, Any]] = {
    status.HTTP_422_UNPROCESSABLE_CONTENT: {"model": ErrorList}
}


def _describe(service: Service) -> ServiceDescription:
    return ServiceDescription(
        code=service.code, name=service.name, fields=[f.name for f in service.fields]
    )


def _not_found(reference: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no application {reference}")


@public.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@public.get("/services")
async def list_services(context: Context) -> list[ServiceDescription]:
    return [_describe(service) for service in context.catalogue.services]


@public.get("/services/{code}")
async def describe_service(code: str, context: Context) -> ServiceDescription:
    service = context.catalogue.get(code)
    if service is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no service {code}")
    return _describe(service)


@gateway.post(
    "/applications",
    status_code=status.HTTP_201_CREATED,
    responses={status.HTTP_200_OK: {"description": "Repeated Idempotency-Key"}, **_REJECTED},
)
def file_application(
    body: ApplicationRequest, key: IdempotencyKey, context: Context, response: Response
) -> ApplicationCreated:
    service = context.catalogue.get(body.service_code)
    if service is None:
        raise InvalidFormError([FieldError(field="service_code", message="unknown service")])
    if errors := field_errors(service, body.fields):
        raise InvalidFormError(errors)
    try:
        filed = context.store.file(service, body.fields, body.language, key)
    except IdempotencyKeyReusedError:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "Idempotency-Key already used for a different application"
        ) from None
    if not filed.created:
        response.status_code = status.HTTP_200_OK
    return ApplicationCreated.model_validate(filed.application)


@gateway.get("/applications/{reference}")
def get_application(reference: str, context: Context) -> ApplicationDetail:
    try:
        return ApplicationDetail.model_validate(context.store.get(reference))
    except UnknownApplicationError:
        raise _not_found(reference) from None


@operator.get("/applications")
def list_applications(
    context: Context, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[ApplicationSummary]:
    """Newest first, for a human running the stack locally."""
    return [ApplicationSummary.model_validate(a) for a in context.store.recent(limit)]


@operator.post("/applications/{reference}/advance")
def advance_application(
    reference: str,
    context: Context,
    background: BackgroundTasks,
    body: AdvanceRequest | None = None,
) -> ApplicationDetail:
    request = body or AdvanceRequest()
    try:
        application = context.store.advance(reference, request.stage, request.note)
    except UnknownApplicationError:
        raise _not_found(reference) from None
    except TransitionRefusedError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    detail = ApplicationDetail.model_validate(application)
    if context.webhook_url and context.webhook_secret:
        background.add_task(push_stage_change, context.webhook_url, context.webhook_secret, detail)
    return detail


def push_stage_change(url: str, secret: str, detail: ApplicationDetail) -> None:
    """Tell the gateway, signed; a few tries (it also reads status when asked)."""
    body = json.dumps(
        {
            "event_id": uuid.uuid4().hex,
            "reference": detail.reference,
            "stage": detail.stage,
            "updated_at": detail.updated_at.isoformat(),
            "note": detail.note,
        }
    ).encode()
    for attempt in range(3):
        try:
            response = httpx.post(
                url, content=body, headers=signed_headers(secret, body), timeout=10
            )
            if response.status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5 * 2**attempt)
    log.warning("stage change of %s not delivered to the gateway", detail.reference)
