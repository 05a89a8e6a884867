"""The department's own check of a filed form against the catalogue.

The gateway validates answers too, but a department cannot trust its callers: it refuses
missing and unknown fields and values its form rules forbid. Values arrive normalised
(dates as ISO 8601, choices as their code, numbers as digits), as the gateway stores them;
"not in the future" is left to the gateway, whose clock and time zone are the citizen's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date

from service_connectors.catalogue import FieldType, Service, ServiceField
from service_connectors.reference_backend.schemas import FieldError

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def field_errors(service: Service, values: Mapping[str, str]) -> list[FieldError]:
    """Every problem with ``values`` for ``service``, in form order, unknown fields last."""
    known = {f.name for f in service.fields}
    errors = [
        FieldError(field=spec.name, message=message)
        for spec in service.fields
        if (message := _problem(spec, values.get(spec.name))) is not None
    ]
    errors += [
        FieldError(field=name, message=f"unknown field for service {service.code}")
        for name in values
        if name not in known
    ]
    return errors


def _problem(spec: ServiceField, raw: str | None) -> str | None:
    value = (raw or "").strip()
    if not value:
        return "this field is required" if spec.required else None
    if not spec.min_length <= len(value) <= spec.max_length:
        return f"must be {spec.min_length} to {spec.max_length} characters long"
    if spec.type is FieldType.CHOICE and value not in {c.value for c in spec.choices}:
        return "must be one of: " + ", ".join(c.value for c in spec.choices)
    if spec.type is FieldType.NUMBER:
        return _number_problem(spec, value)
    if spec.type is FieldType.DATE and not _is_iso_date(value):
        return "must be a date written YYYY-MM-DD"
    return None


def _is_iso_date(value: str) -> bool:
    if not _ISO_DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _number_problem(spec: ServiceField, value: str) -> str | None:
    if not (value.isascii() and value.isdigit()):
        return "must be a whole number"
    number = int(value)
    if spec.min_value is not None and number < spec.min_value:
        return f"must be at least {spec.min_value}"
    if spec.max_value is not None and number > spec.max_value:
        return f"must be at most {spec.max_value}"
    return None
