"""An Open311 GeoReport v2 city on loopback (JSON format), for the real ``Open311Connector``.

It serves the spec's endpoints — services, service definitions, ``POST /requests.json``
(form-encoded, ``api_key`` required), request search and lookup, batch tokens — answers
errors as GeoReport's ``[{"code", "description"}]`` lists, records every accepted request
with its form fields as posted, and can misbehave on demand: ``down_for`` answers the next
POSTs 503 without filing; ``accept_then_fail`` files the next POSTs but answers 503, as
when the city's answer is lost on the way back; ``script`` answers the next POSTs as
scripted (``Answer``: an HTML 500, a 429 with ``Retry-After``, a slow answer…).

It can also be the independently written servers met in the field (issue 24):
``address_field="address"`` reads only ``address`` (the spec's ``address_string`` is
ignored, as such a server does); ``attribute_format`` names attributes otherwise;
``search=False`` offers no ``GET /requests.json`` (404, with the count in
``searches``); ``update_lag`` stamps ``updated_datetime`` that long after
``requested_datetime`` on creation (timestamps then keep microseconds);
``reference_like_ids`` issues 8-character ids from the reference alphabet
(``zpn9b29p``, …), which ``find_reference`` reads as references.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

API_KEY = "test-open311-key"
POTHOLE = "4fd3b167e750846744000005"
STREETLIGHT = "4ffa4c69601827691b000018"
GRAFFITI = "5a2b9c11e7508467440000aa"  # a batch service: a token first, the id later

SERVICES: list[dict[str, Any]] = [
    {"service_code": POTHOLE, "service_name": "Pothole", "description": "Potholes in roads",
     "metadata": True, "type": "realtime", "keywords": "road, hole", "group": "Streets"},
    {"service_code": STREETLIGHT, "service_name": "Streetlight out", "description": "",
     "metadata": True, "type": "realtime", "keywords": "", "group": "Streets"},
    {"service_code": GRAFFITI, "service_name": "Graffiti removal", "description": "",
     "metadata": False, "type": "batch", "keywords": "", "group": "Parks"},
]  # fmt: skip

# Listed out of order on purpose: clients must sort by ``order``.
DEFINITIONS: dict[str, list[dict[str, Any]]] = {
    POTHOLE: [
        {"variable": True, "code": "hazards", "datatype": "multivaluelist", "required": False,
         "datatype_description": None, "order": 3, "description": "Anything else there?",
         "values": [{"key": "debris", "name": "Debris"}, {"key": "water", "name": "Water"},
                    {"key": "sign_down", "name": "Sign knocked down"}]},
        {"variable": True, "code": "size", "datatype": "singlevaluelist", "required": True,
         "datatype_description": None, "order": 1, "description": "How big is it?",
         "values": [{"key": "small", "name": "Smaller than a plate"},
                    {"key": "medium", "name": "About a tyre wide"},
                    {"key": "large", "name": "Larger than a tyre"}]},
        {"variable": False, "code": "NOTICE", "datatype": "text", "required": False,
         "datatype_description": None, "order": 2, "description": "Crews fill within 7 days.",
         "values": []},
        {"variable": True, "code": "depth_cm", "datatype": "number", "required": False,
         "datatype_description": "Centimetres", "order": 4, "description": "How deep?",
         "values": []},
    ],
    STREETLIGHT: [
        {"variable": True, "code": "problem", "datatype": "singlevaluelist", "required": True,
         "datatype_description": None, "order": 1, "description": "What is wrong with it?",
         "values": [{"key": "out", "name": "Not working"},
                    {"key": "flickering", "name": "Flickering"},
                    {"key": 3, "name": "On during the day"}]},
        {"variable": True, "code": "noticed_at", "datatype": "datetime", "required": False,
         "datatype_description": None, "order": 2, "description": "Since when?", "values": []},
    ],
}  # fmt: skip


REFERENCE_LIKE_IDS = ("zpn9b29p", "xk7m2q4r")  # the first ones issued, then random ones
_ID_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _reference_like_ids() -> Iterator[str]:
    """Two letters and six characters holding a digit: ``find_reference`` takes them."""
    yield from REFERENCE_LIKE_IDS
    draw = random.Random(24)  # a test double: the same ids every run
    while True:
        body = "".join(draw.choice(_ID_ALPHABET) for _ in range(5)) + draw.choice("23456789")
        yield "".join(draw.choice("abcdefghjkmnpqrstuvwxyz") for _ in range(2)) + body


@dataclass(frozen=True)
class Answer:
    """One scripted answer to ``POST /requests.json`` (issue 24: what real servers do):
    ``status`` with ``body`` as ``content_type`` and ``headers``, after ``delay`` seconds
    (longer than the connector's timeout: a timeout). ``status`` 0 files the request as
    usual (after the delay)."""

    status: int
    body: str = ""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Open311Double:
    """The city. Configure it, serve ``app()``, inspect ``requests``; thread-safe."""

    api_key: str = API_KEY
    jurisdiction_id: str | None = None
    token_polls: int = 2  # polls of a batch token before it names its request
    down_for: int = 0
    accept_then_fail: int = 0
    address_field: str = "address_string"  # the only field it reads an address from
    attribute_format: str = "attribute[{code}]"
    search: bool = True  # offers GET /requests.json
    update_lag: timedelta | None = None  # updated_datetime after requested_datetime
    reference_like_ids: bool = False
    searches: int = 0  # GET /requests.json calls received, offered or not
    lookups: int = 0  # GET /requests/{id}.json calls (status polls and STATUS)
    # Answers to the next POSTs, in order, instead of filing (see ``Answer``).
    script: list[Answer] = field(default_factory=list)
    # service_request_id → the request as GET shows it, plus "form": the POST's fields.
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    posts: int = 0  # every POST /requests.json that reached the city, filed or not
    _tokens: dict[str, list[Any]] = field(default_factory=dict)  # token → [id, polls left]
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Iterator[Any] = field(default_factory=lambda: itertools.count(101))

    def __post_init__(self) -> None:
        if self.reference_like_ids:
            self._ids = _reference_like_ids()

    def forms(self) -> list[list[tuple[str, str]]]:
        with self._lock:
            return [r["form"] for r in self.requests.values()]

    def update(self, request_id: str, status: str, notes: str | None = None, **extra: Any) -> None:
        """What a city clerk does: close a request, add notes, set other fields."""
        with self._lock:
            changes = {"status": status, "status_notes": notes, "updated_datetime": _now()}
            self.requests[request_id].update({**changes, **extra})

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/services.json")
        async def services(jurisdiction_id: str | None = None) -> Any:
            return self._refused(jurisdiction_id) or SERVICES

        @app.get("/services/{code}.json")
        async def definition(code: str, jurisdiction_id: str | None = None) -> Any:
            if refused := self._refused(jurisdiction_id):
                return refused
            if code not in DEFINITIONS:
                return _errors(404, f"service_code {code} not found or has no metadata")
            return {"service_code": code, "attributes": DEFINITIONS[code]}

        @app.post("/requests.json")
        async def create(request: Request) -> Any:
            form = [(k, str(v)) for k, v in (await request.form()).multi_items()]
            if (scripted := self._scripted()) is not None:
                await asyncio.sleep(scripted.delay)
                if scripted.status == 0:
                    return self._create(form)
                return Response(
                    scripted.body, scripted.status, scripted.headers, scripted.content_type
                )
            return self._create(form)

        @app.get("/tokens/{token}.json")
        async def token(token: str, jurisdiction_id: str | None = None) -> Any:
            if refused := self._refused(jurisdiction_id):
                return refused
            with self._lock:
                if token not in self._tokens:
                    return _errors(404, f"token {token} not found")
                entry = self._tokens[token]
                entry[1] -= 1
                return [{"token": token, "service_request_id": entry[0] if entry[1] < 0 else None}]

        @app.get("/requests.json")
        async def search(
            jurisdiction_id: str | None = None,
            service_request_id: str | None = None,
            service_code: str | None = None,
            start_date: datetime | None = None,
            end_date: datetime | None = None,
            status: str | None = None,
        ) -> Any:
            with self._lock:
                self.searches += 1
            if not self.search:
                return _errors(404, "Not Found")
            if refused := self._refused(jurisdiction_id):
                return refused
            ids = service_request_id.split(",") if service_request_id else None
            with self._lock:
                return [
                    _public(r) for r in self._visible()
                    if (ids is None or r["service_request_id"] in ids)
                    and service_code in (None, r["service_code"])
                    and (start_date is None or r["_at"] >= start_date)
                    and (end_date is None or r["_at"] <= end_date)
                    and (status is None or r["status"] in status.split(","))
                ]  # fmt: skip

        @app.get("/requests/{request_id}.json")
        async def lookup(request_id: str, jurisdiction_id: str | None = None) -> Any:
            if refused := self._refused(jurisdiction_id):
                return refused
            with self._lock:
                self.lookups += 1
                found = [
                    _public(r) for r in self._visible() if r["service_request_id"] == request_id
                ]
            return found or _errors(404, f"service_request_id {request_id} not found")

        return app

    def _scripted(self) -> Answer | None:
        """The next scripted answer to a POST (counted in ``posts``), if any is left."""
        with self._lock:
            if not self.script:
                return None
            self.posts += 1
            return self.script.pop(0)

    def _create(self, form: list[tuple[str, str]]) -> Any:
        fields = dict(form)
        with self._lock:
            self.posts += 1
            if self.down_for > 0:
                self.down_for -= 1
                return _errors(503, "Service temporarily unavailable")
        if fields.get("api_key") != self.api_key:
            return _errors(403, "api_key is missing or invalid")
        if refused := self._refused(fields.get("jurisdiction_id")):
            return refused
        service = next(
            (s for s in SERVICES if s["service_code"] == fields.get("service_code")), None
        )
        if service is None:
            return _errors(400, f"service_code {fields.get('service_code')} not found")
        if problems := self._problems(service["service_code"], form, fields):
            return JSONResponse([{"code": 400, "description": p} for p in problems], 400)
        with self._lock:
            request_id = str(next(self._ids))
            requested, updated = _now(), _now()
            if self.update_lag is not None:
                moment = datetime.now(UTC)
                requested, updated = moment.isoformat(), (moment + self.update_lag).isoformat()
            self.requests[request_id] = {
                "service_request_id": request_id, "status": "open", "status_notes": None,
                "service_name": service["service_name"], "service_code": service["service_code"],
                "description": fields.get("description", ""), "agency_responsible": "Public Works",
                "service_notice": "", "requested_datetime": requested,
                "updated_datetime": updated, "expected_datetime": None,
                "address": fields.get(self.address_field, ""),
                "address_id": "", "zipcode": "", "lat": fields.get("lat"),
                "long": fields.get("long"), "media_url": "", "form": form,
                "_at": datetime.now(UTC), "_pending": service["type"] == "batch",
            }  # fmt: skip
            if service["type"] == "batch":
                token = f"tok-{request_id}"
                self._tokens[token] = [request_id, self.token_polls - 1]
                answer: list[dict[str, Any]] = [{"token": token}]
            else:
                answer = [{"service_request_id": request_id, "service_notice": "",
                           "account_id": None}]  # fmt: skip
            if self.accept_then_fail > 0:
                self.accept_then_fail -= 1
                return _errors(503, "Gateway timeout after filing")
        return answer

    def _refused(self, jurisdiction_id: str | None) -> JSONResponse | None:
        if self.jurisdiction_id is not None and jurisdiction_id != self.jurisdiction_id:
            return _errors(400, f"jurisdiction_id {jurisdiction_id} is not served here")
        return None

    def _visible(self) -> list[dict[str, Any]]:
        """A batch request exists for clients once its token has named it."""
        resolved = {entry[0] for entry in self._tokens.values() if entry[1] < 0}
        return [
            r for r in self.requests.values()
            if not r["_pending"] or r["service_request_id"] in resolved
        ]  # fmt: skip

    def _problems(
        self, code: str, form: list[tuple[str, str]], fields: dict[str, str]
    ) -> list[str]:
        problems: list[str] = []
        if not (("lat" in fields and "long" in fields) or fields.get(self.address_field)):
            problems.append(f"lat/long or {self.address_field} is required")
        for attribute in DEFINITIONS.get(code, []):
            name = self.attribute_format.replace("{code}", attribute["code"])
            given = [v for k, v in form if k in (name, f"{name}[]")]
            keys = {str(v["key"]) for v in attribute["values"]}
            if attribute["required"] and not given:
                problems.append(f"{name} is required: {attribute['description']}")
            elif keys and any(v not in keys for v in given):
                problems.append(f"{name} must be one of {', '.join(sorted(keys))}")
        return problems


def _public(request: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in request.items() if k != "form" and not k.startswith("_")}


def _errors(status: int, description: str) -> JSONResponse:
    return JSONResponse([{"code": status, "description": description}], status_code=status)
