"""``ReferenceConnector``: speaks the reference backend's JSON API.

Wire models are private and separate from the backend's own schemas on purpose: the
connector must break (in tests) if the backend's format drifts, as with a real department.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from service_connectors.base import (
    ApplicationNotFound,
    BackendMisconfigured,
    BackendTransient,
    Receipt,
    RemoteService,
    ServiceConnector,
    Stage,
    StatusReport,
    Submission,
    SubmissionRejected,
    excerpt,
)
from service_connectors.catalogue import Service

T = TypeVar("T")

# Backend references are short and plain; anything else is unknown without asking.
_PLAUSIBLE_REFERENCE = re.compile(r"[A-Za-z0-9-]{1,32}")


class _Service(BaseModel):
    code: str
    name: str
    fields: list[str]


class _Application(BaseModel):
    reference: str
    stage: Stage
    updated_at: datetime
    note: str | None = None


class _FieldError(BaseModel):
    field: str
    message: str


class _Errors(BaseModel):
    errors: list[_FieldError]


_SERVICES = TypeAdapter(list[_Service])
_SERVICE = TypeAdapter(_Service)
_APPLICATION = TypeAdapter(_Application)


class ReferenceConnector(ServiceConnector):
    """The connector for ``connector: reference`` services in the catalogue."""

    kind = "reference"
    pushes_status = True  # signed stage webhooks (REFERENCE_BACKEND_WEBHOOK_URL)

    async def _list_services(self) -> list[RemoteService]:
        response = await self.client.get(self._url("services"))
        services = _parse(_SERVICES, _checked(response))
        return [RemoteService(s.code, s.name, tuple(s.fields)) for s in services]

    async def _describe_fields(self, service: Service) -> list[str]:
        response = await self.client.get(self._url("services", service.code))
        if response.status_code == httpx.codes.NOT_FOUND:
            # Not the citizen's problem nor a passing outage: the catalogue routes a
            # service here that this backend does not offer.
            raise BackendMisconfigured(f"the reference backend does not offer {service.code}")
        return _parse(_SERVICE, _checked(response)).fields

    async def _submit(self, submission: Submission) -> Receipt:
        response = await self.client.post(
            self._url("applications"),
            headers={**self._auth(), "Idempotency-Key": submission.idempotency_key},
            json={
                "service_code": submission.service_code,
                "fields": dict(submission.fields),
                "language": submission.language,
            },
        )
        application = _parse(_APPLICATION, _checked(response))
        return Receipt(
            reference=application.reference,
            stage=application.stage,
            backend_id=application.reference,  # its stage webhooks name it
        )

    async def _get_status(self, backend_id: str) -> StatusReport:
        if not _PLAUSIBLE_REFERENCE.fullmatch(backend_id):
            raise ApplicationNotFound(backend_id)
        response = await self.client.get(
            self._url("applications", backend_id), headers=self._auth()
        )
        application = _parse(_APPLICATION, _checked(response))
        return StatusReport(
            reference=application.reference,
            stage=application.stage,
            updated_at=application.updated_at,
            note=application.note,
        )

    def _url(self, *segments: str) -> str:
        """Absolute, so an injected client needs no ``base_url``; each segment is escaped,
        so a value cannot reach another path."""
        path = "/".join(quote(segment, safe="") for segment in segments)
        return f"{self.config.base_url.rstrip('/')}/{path}"

    def _auth(self) -> dict[str, str]:
        if not self.config.api_key:
            raise BackendMisconfigured("the reference connector needs an api_key")
        return {"Authorization": f"Bearer {self.config.api_key}"}


def _checked(response: httpx.Response) -> httpx.Response:
    """Field errors of a 422 as ``SubmissionRejected``; every other error status goes
    through ``raise_for_status`` for the base class to map."""
    if response.status_code == httpx.codes.UNPROCESSABLE_ENTITY:
        try:
            errors = _Errors.model_validate_json(response.content).errors
        except ValidationError:
            errors = []
        raise SubmissionRejected(
            "the backend refused the application",
            {e.field: e.message for e in errors},
            status=response.status_code,
            excerpt=excerpt(response.content),
        )
    return response.raise_for_status()


def _parse(wire_format: TypeAdapter[T], response: httpx.Response) -> T:
    """A 2xx body the connector cannot read is the backend's fault: retry later."""
    try:
        return wire_format.validate_json(response.content)
    except ValidationError as exc:
        message = "malformed response from the reference backend"
        raise BackendTransient.answered(response, message) from exc
