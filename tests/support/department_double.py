"""A fictional permits office for ``RestConnector`` tests, with JSON shapes of its own.

Nothing here is shaped like our models on purpose: nested bodies, other key names, its
own status words and error list, integer ids. Tests drive the clerk's side directly
(``office.applications[...]``) and can make the office ``down`` (503) or slow (``delay``),
or answer the next applications as scripted (``script``: status, body, content type and
headers each, as real servers answer: an HTML 500, a 429 with ``Retry-After``…).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse, Response

PERMIT_TYPES = {"STREET_PARTY": "Street party", "SIDEWALK_CAFE": "Sidewalk café"}
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class PermitApplication:
    id: int
    body: dict[str, Any]
    state: str = "PENDING"
    remarks: str | None = None
    modified: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def case_number(self) -> str:
        return f"EP-2026-{self.id:04d}"

    def as_json(self) -> dict[str, Any]:
        return {
            "data": {
                "id": self.id,
                "case_number": self.case_number,
                "state": self.state,
                "modified": self.modified.isoformat(),
                "remarks": {"public": self.remarks, "internal": "not for citizens"},
            }
        }


class PermitsOffice:
    """The office's API under ``/api``; its state is plain attributes for tests to set."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.url = ""  # set by whoever serves ``app``
        self.down = False
        self.delay = 0.0
        self.applications: dict[int, PermitApplication] = {}
        self.by_idempotency_key: dict[str, int] = {}
        self.bodies: list[dict[str, Any]] = []
        # (status, body, content type, headers): answers to the next applications.
        self.script: list[tuple[int, str, str, dict[str, str]]] = []
        self.app = self._build()

    def _build(self) -> FastAPI:
        app = FastAPI(dependencies=[Depends(self._gate)])

        @app.get("/api/v2/permit-types")
        async def permit_types() -> dict[str, Any]:
            return {"types": [{"kind": k, "title": t} for k, t in PERMIT_TYPES.items()]}

        @app.post("/api/v2/permit-applications")
        async def apply(
            body: Annotated[dict[str, Any], Body()],
            idempotency_key: Annotated[str | None, Header()] = None,
        ) -> Response:
            self.bodies.append(body)
            if self.script:
                status, text, content_type, headers = self.script.pop(0)
                return Response(text, status, headers, content_type)
            if not idempotency_key:
                return _problems(400, [{"detail": "an Idempotency-Key header is required"}])
            if (known := self.by_idempotency_key.get(idempotency_key)) is not None:
                return JSONResponse(self.applications[known].as_json(), status_code=200)
            if problems := _check(body):
                return _problems(422, problems)
            application = PermitApplication(id=len(self.applications) + 17, body=body)
            self.applications[application.id] = application
            self.by_idempotency_key[idempotency_key] = application.id
            return JSONResponse(application.as_json(), status_code=201)

        @app.get("/api/v2/permit-applications/{application_id}")
        async def application(application_id: str) -> dict[str, Any]:
            found = self.applications.get(int(application_id)) if application_id.isdigit() else None
            if found is None:
                raise HTTPException(404, "no such application")
            return found.as_json()

        return app

    async def _gate(self, request: Request) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            raise HTTPException(503, "down for maintenance")
        if request.headers.get("authorization") != f"Bearer {self.token}":
            raise HTTPException(401, "bad token")


def _check(body: dict[str, Any]) -> list[dict[str, str]]:
    """The office's own rules, reported as JSON pointers to its own keys."""
    applicant, event = body.get("applicant", {}), body.get("event", {})
    problems = []
    if body.get("permit", {}).get("type") not in PERMIT_TYPES:
        problems.append({"pointer": "/permit/type", "detail": "unknown permit type"})
    if not str(applicant.get("name", "")).strip():
        problems.append({"pointer": "/applicant/name", "detail": "is required"})
    if not ISO_DATE.match(str(event.get("date", ""))):
        problems.append({"pointer": "/event/date", "detail": "must be a date like 2026-07-01"})
    if body.get("consent", {}).get("terms_accepted") is not True:
        problems.append({"pointer": "/consent/terms_accepted", "detail": "must be accepted"})
    return problems


def _problems(status: int, problems: list[dict[str, str]]) -> JSONResponse:
    return JSONResponse({"title": "Request rejected", "problems": problems}, status_code=status)
