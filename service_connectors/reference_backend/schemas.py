"""The reference backend's JSON wire format (requests and responses)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from service_connectors.base import Stage

FieldValue = Annotated[str, StringConstraints(max_length=2000)]


class ServiceDescription(BaseModel):
    code: str
    name: str
    fields: list[str]


class ApplicationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service_code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    fields: Annotated[dict[str, FieldValue], Field(max_length=50)]
    language: Annotated[str, StringConstraints(min_length=2, max_length=16)] = "en"


class AdvanceRequest(BaseModel):
    """Without ``stage`` the application moves to the next stage of the usual path."""

    model_config = ConfigDict(extra="forbid")

    stage: Stage | None = None
    note: Annotated[str, StringConstraints(max_length=500)] | None = None


class FieldError(BaseModel):
    field: str
    message: str


class ErrorList(BaseModel):
    errors: list[FieldError]


class ApplicationCreated(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    reference: str
    service_code: str
    stage: Stage
    created_at: datetime
    updated_at: datetime


class ApplicationSummary(ApplicationCreated):
    note: str | None


class HistoryEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    stage: Stage
    at: datetime
    note: str | None


class ApplicationDetail(ApplicationSummary):
    history: list[HistoryEntry]
