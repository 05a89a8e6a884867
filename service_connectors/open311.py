"""``Open311Connector``: files reports with a city through GeoReport v2 (JSON format).

Spec: https://wiki.open311.org/GeoReport_v2. Options (``ConnectorConfig.options``):

- ``jurisdiction_id``: sent on every call when set (multi-city servers need it).
- ``service_code.<catalogue code>``: the city's ``service_code`` for one of our services
  (see :func:`service_code_options`); unmapped services use the catalogue code as is.
- ``token_polls`` (3) and ``token_poll_delay_seconds`` (1.0): how long a batch service's
  token is polled for a ``service_request_id`` before the submit is left to a retry.
- ``lookup_days`` (7, ``0`` disables): GeoReport has no idempotency key, so every
  description carries ``[civicgate:<idempotency_key>]`` and each submit first asks
  ``GET /requests.json`` (one call, the service's last days) for a request that carries
  it. A retry whose first attempt did reach the city then gets that request back instead
  of filing a second one. A batch token still pending is remembered (in memory) and
  polled again on the retry; after a restart the lookup finds it once the city has it.

The city's dialect (servers written from the spec differ; settings, no code):

- ``address_field`` (``address_string``): the form field carrying a street address; some
  servers read ``address`` instead, and silently drop the spec's name.
- ``attribute_format`` (``attribute[{code}]``): how an attribute's field is named, with
  ``{code}`` for its code; a multi-value attribute repeats it with ``[]`` appended.
- ``request_search`` (``true``): whether the city offers ``GET /requests.json``. With
  ``false`` the connector never calls it (as ``lookup_days=0``): a retry after an answer
  lost on the way back may then file the request twice.
- ``creation_window_seconds`` (2): an ``updated_datetime`` this close to
  ``requested_datetime`` is the city stamping a new request, not someone touching it.

Status mapping (GeoReport only knows open/closed): ``closed`` → ``approved``; ``open`` →
``in_review`` once ``status_notes`` is set or ``updated_datetime`` is later than
``requested_datetime`` by more than the creation window (someone touched it), else
``received``; a non-standard status some vendors add → ``in_review`` rather than an
unreadable answer. The note joins ``status_notes``, ``agency_responsible`` and
``expected_datetime``.
"""

from __future__ import annotations

import asyncio
import enum
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar
from urllib.parse import quote, urlencode

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, TypeAdapter, ValidationError

from service_connectors.base import (
    OUTAGE_STATUSES,
    ApplicationNotFound,
    BackendMisconfigured,
    BackendRefused,
    BackendTransient,
    BackendUnavailable,
    ConnectorConfig,
    ConnectorError,
    Receipt,
    RemoteService,
    ServiceConnector,
    Stage,
    StatusReport,
    Submission,
    SubmissionRejected,
    excerpt,
)
from service_connectors.catalogue import FieldType, Service

T = TypeVar("T")

LOCATION_FIELD = "location"
CONTACT_FIELDS = ("first_name", "last_name", "phone", "email")
MAX_DESCRIPTION = 4000  # GeoReport's limit for ``description``
# "45.42150, -75.69720", as a shared Telegram location arrives; decimals required so a
# street number like "12, 4" stays an address.
_COORDINATES = re.compile(r"\s*([-+]?\d{1,2}\.\d+)\s*,\s*([-+]?\d{1,3}\.\d+)\s*")
_ATTRIBUTE_REF = re.compile(r"attribute\[([^\]]+)\]")
# Bare "long" and "address" are left out: "too long", "email address" are not locations.
_LOCATION_REF = re.compile(r"\b(lat|latitude|longitude|address_string|address_id|location)\b", re.I)
_CONTACT_REF = re.compile(rf"\b({'|'.join(CONTACT_FIELDS)})\b", re.I)
_CONFIG_REF = re.compile(r"\b(api_key|jurisdiction_id|service_code)\b", re.I)
_NO_SEARCH = (
    "set OPEN311_REQUEST_SEARCH=false (request_search, or lookup_days=0)"
    " if the city does not offer GET /requests.json"
)
_PLAUSIBLE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_FIELD_NAME = re.compile(r"[A-Za-z0-9_.\[\]-]{1,64}")
ADDRESS_FIELD = "address_string"  # the spec's
ATTRIBUTE_FORMAT = "attribute[{code}]"  # the spec's
CREATION_WINDOW = timedelta(seconds=2)


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one city's server spells the request form (see the module's docstring)."""

    address_field: str = ADDRESS_FIELD
    attribute_format: str = ATTRIBUTE_FORMAT

    def __post_init__(self) -> None:
        if not _FIELD_NAME.fullmatch(self.address_field):
            raise ValueError(f"open311 address_field {self.address_field!r} is not a field name")
        sample = self.attribute_format.replace("{code}", "x", 1)
        if "{code}" not in self.attribute_format or not _FIELD_NAME.fullmatch(sample):
            raise ValueError(
                f"open311 attribute_format {self.attribute_format!r} needs one {{code}}"
            )

    def attribute(self, code: str) -> str:
        return self.attribute_format.replace("{code}", code, 1)


class Datatype(enum.StrEnum):
    STRING = "string"
    NUMBER = "number"
    DATETIME = "datetime"
    TEXT = "text"
    SINGLEVALUELIST = "singlevaluelist"
    MULTIVALUELIST = "multivaluelist"


_FIELD_TYPES = {
    Datatype.STRING: FieldType.TEXT,
    Datatype.TEXT: FieldType.TEXT,
    Datatype.NUMBER: FieldType.NUMBER,
    Datatype.DATETIME: FieldType.DATE,
    Datatype.SINGLEVALUELIST: FieldType.CHOICE,
    Datatype.MULTIVALUELIST: FieldType.CHOICE,
}


@dataclass(frozen=True, slots=True)
class AttributeValue:
    key: str
    name: str


@dataclass(frozen=True, slots=True)
class Attribute:
    """One extra question of a city service; ``variable=False`` ones are only text."""

    code: str
    datatype: Datatype
    required: bool
    order: int
    description: str
    variable: bool = True
    values: tuple[AttributeValue, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    service_code: str
    attributes: tuple[Attribute, ...] = ()  # in the city's ``order``

    def attribute(self, name: str) -> Attribute | None:
        """The attribute for one of our field names (codes compared case-insensitively,
        since catalogue field names are lower-case)."""
        return next((a for a in self.attributes if a.code.lower() == name.lower()), None)


@dataclass(frozen=True, slots=True)
class NumberedChoice:
    number: int  # what a citizen replies ("Please reply 1, 2 or 3")
    key: str  # what the city expects
    name: str


@dataclass(frozen=True, slots=True)
class FieldDescription:
    """A catalogue-ready question for one attribute (for importing a city service)."""

    name: str
    type: FieldType
    required: bool
    description: str
    choices: tuple[NumberedChoice, ...] = ()
    multiple: bool = False


def field_descriptions(definition: ServiceDefinition) -> list[FieldDescription]:
    """The questions a citizen must be asked for ``definition``, in the city's order."""
    return [
        FieldDescription(
            name=a.code,
            type=_FIELD_TYPES[a.datatype],
            required=a.required,
            description=a.description,
            choices=tuple(NumberedChoice(n, v.key, v.name) for n, v in enumerate(a.values, 1)),
            multiple=a.datatype is Datatype.MULTIVALUELIST,
        )
        for a in definition.attributes
        if a.variable
    ]


def service_code_options(mapping: str) -> dict[str, str]:
    """``"pothole=4fd3b1…, streetlight=4ffa4c…"`` (a setting) → connector options."""
    options: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in mapping.split(","))):
        ours, sep, theirs = (s.strip() for s in pair.partition("="))
        if not (sep and ours and theirs):
            raise ValueError(f"service code mapping {pair!r} is not ours=theirs")
        options[f"service_code.{ours}"] = theirs
    return options


# --- wire format (private: a drift in the city's format must break the tests) -------------


def _blank_is_none(value: object) -> object:
    return value if value not in ("", None) else None


_When = Annotated[datetime | None, BeforeValidator(_blank_is_none)]
_Text = Annotated[str | None, BeforeValidator(_blank_is_none)]


class _Wire(BaseModel):
    model_config = ConfigDict(coerce_numbers_to_str=True)  # ids and keys are often numbers


class _Service(_Wire):
    service_code: str
    service_name: str
    metadata: bool = False


class _Value(_Wire):
    key: str
    name: str


class _Attribute(_Wire):
    variable: bool = True
    code: str
    datatype: Datatype
    required: bool = False
    order: int = 0
    description: str = ""
    values: list[_Value] | None = None

    def public(self) -> Attribute:
        values = tuple(AttributeValue(v.key, v.name) for v in self.values or ())
        return Attribute(
            self.code,
            self.datatype,
            self.required,
            self.order,
            self.description,
            self.variable,
            values,
        )


class _Definition(_Wire):
    service_code: str
    attributes: list[_Attribute] = []


class _Created(_Wire):
    service_request_id: _Text = None
    token: _Text = None


class _Request(_Wire):
    service_request_id: str
    status: str  # "open" or "closed" in the spec; some servers add their own
    status_notes: _Text = None
    description: _Text = None
    agency_responsible: _Text = None
    requested_datetime: _When = None
    updated_datetime: _When = None
    expected_datetime: _When = None


class _Error(_Wire):
    code: str = ""
    description: str = ""


_SERVICES = TypeAdapter(list[_Service])
_DEFINITION = TypeAdapter(_Definition)
_CREATED = TypeAdapter(list[_Created])
_REQUESTS = TypeAdapter(list[_Request])
_ERRORS = TypeAdapter(list[_Error])


class Open311Connector(ServiceConnector):
    """The connector for ``connector: open311`` services in the catalogue."""

    kind = "open311"

    def __init__(self, config: ConnectorConfig, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(config, client)
        options = config.options
        self.jurisdiction_id = options.get("jurisdiction_id") or None
        self.service_codes = {
            key.removeprefix("service_code."): value
            for key, value in options.items()
            if key.startswith("service_code.")
        }
        self.token_polls = int(options.get("token_polls", "3"))
        self.token_poll_delay = float(options.get("token_poll_delay_seconds", "1.0"))
        self.lookup_days = int(options.get("lookup_days", "7"))
        self.request_search = _flag(options.get("request_search", "true"), "request_search")
        self.dialect = Dialect(
            address_field=options.get("address_field") or ADDRESS_FIELD,
            attribute_format=options.get("attribute_format") or ATTRIBUTE_FORMAT,
        )
        self.creation_window = timedelta(seconds=float(options.get("creation_window_seconds", "2")))
        self._definitions: dict[str, ServiceDefinition] = {}
        self._tokens: dict[str, str] = {}  # idempotency key → token of an unresolved submit
        self._submitting: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def city_code(self, catalogue_code: str) -> str:
        return self.service_codes.get(catalogue_code, catalogue_code)

    async def service_definition(self, city_code: str) -> ServiceDefinition:
        """The city's attributes for ``city_code`` (see :func:`field_descriptions`)."""
        return await self._guarded(lambda: self._definition(city_code))

    # --- hooks -----------------------------------------------------------------------------

    async def _list_services(self) -> list[RemoteService]:
        """``field_names`` stay empty: they cost a call per service, see ``describe_fields``."""
        return [RemoteService(s.service_code, s.service_name) for s in await self._services()]

    async def _describe_fields(self, service: Service) -> list[str]:
        code = self.city_code(service.code)
        offered = {s.service_code: s for s in await self._services()}
        if code not in offered:
            raise BackendMisconfigured(f"the city does not offer {service.code} ({code})")
        if not offered[code].metadata:
            return []
        return [a.code for a in (await self._definition(code)).attributes if a.variable]

    async def _submit(self, submission: Submission) -> Receipt:
        if not self.config.api_key:
            raise BackendMisconfigured("the open311 connector needs an api_key")
        key = submission.idempotency_key
        # One submit per key at a time here, so concurrent retries find each other's request.
        lock = self._submitting.setdefault(key, asyncio.Lock())
        async with lock:
            if (token := self._tokens.get(key)) is not None:
                return await self._resolve(key, token)
            if (filed := await self._already_filed(submission)) is not None:
                return filed
            return await self._file(submission)

    async def _get_status(self, backend_id: str) -> StatusReport:
        if not _PLAUSIBLE_ID.fullmatch(backend_id):
            raise ApplicationNotFound(backend_id)
        response = await self.client.get(
            self._url("requests", f"{backend_id}.json"), params=self._params()
        )
        _checked(
            response,
            lambda _: ApplicationNotFound(backend_id),
            lambda _: ApplicationNotFound(backend_id),
        )
        requests = _parse(_REQUESTS, response)
        if not requests:
            raise ApplicationNotFound(backend_id)
        request = requests[0]
        return StatusReport(
            reference=request.service_request_id,
            stage=_stage(request, self.creation_window),
            updated_at=request.updated_datetime,
            note=_note(request),
        )

    # --- submitting ------------------------------------------------------------------------

    async def _already_filed(self, submission: Submission) -> Receipt | None:
        if self.lookup_days <= 0 or not self.request_search:
            return None  # never relied on where the city offers no search
        now = datetime.now(UTC)
        response = await self.client.get(
            self._url("requests.json"),
            params=self._params(
                service_code=self.city_code(submission.service_code),
                start_date=_w3c(now - timedelta(days=self.lookup_days)),
                end_date=_w3c(now + timedelta(hours=1)),  # the city's clock may run ahead
            ),
        )
        _checked(
            response, lambda why: BackendMisconfigured(f"no request search ({why}): {_NO_SEARCH}")
        )
        marker = _marker(submission.idempotency_key)
        for request in _parse(_REQUESTS, response):
            if marker in (request.description or ""):
                return _receipt(request.service_request_id, _stage(request, self.creation_window))
        return None

    async def _file(self, submission: Submission) -> Receipt:
        code = self.city_code(submission.service_code)
        definition = await self._definition(code, missing_ok=True)
        form, sent_as = _request_form(submission, definition, self.dialect)
        form = [("api_key", self.config.api_key or ""), ("service_code", code), *form]
        form += list(self._params().items())
        response = await self.client.post(
            self._url("requests.json"),
            content=urlencode(form),  # keeps repeated ``attribute[CODE][]`` keys in order
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

        def rejected(errors: list[_Error]) -> ConnectorError:
            self._definitions.pop(code, None)  # the city may have changed its questions
            return _rejection(errors, sent_as)

        _checked(response, BackendMisconfigured, rejected)
        created = _parse(_CREATED, response)
        if not created:
            raise BackendUnavailable("empty answer to POST /requests.json")
        if created[0].service_request_id:
            return _receipt(created[0].service_request_id, Stage.RECEIVED)
        if not created[0].token:
            raise BackendUnavailable("neither service_request_id nor token in the answer")
        self._tokens[submission.idempotency_key] = created[0].token
        return await self._resolve(submission.idempotency_key, created[0].token)

    async def _resolve(self, key: str, token: str) -> Receipt:
        """Poll a batch service's token; still pending means retry later, not refile."""
        for _ in range(self.token_polls):
            await asyncio.sleep(self.token_poll_delay)
            response = await self.client.get(
                self._url("tokens", f"{token}.json"), params=self._params()
            )
            if response.status_code == httpx.codes.NOT_FOUND:
                continue  # some servers know a token only once it is processed
            _checked(response, BackendMisconfigured)
            answers = _parse(_CREATED, response)
            if answers and answers[0].service_request_id:
                self._tokens.pop(key, None)
                return _receipt(answers[0].service_request_id, Stage.RECEIVED)
        raise BackendUnavailable(f"token {token} has no service_request_id yet")

    # --- reading ---------------------------------------------------------------------------

    async def _services(self) -> list[_Service]:
        response = await self.client.get(self._url("services.json"), params=self._params())
        return _parse(_SERVICES, _checked(response, BackendMisconfigured))

    async def _definition(self, code: str, missing_ok: bool = False) -> ServiceDefinition:
        """Cached per connector: questions change rarely, and a 400 drops the entry."""
        if (cached := self._definitions.get(code)) is not None:
            return cached
        response = await self.client.get(
            self._url("services", f"{code}.json"), params=self._params()
        )
        if missing_ok and response.status_code == httpx.codes.NOT_FOUND:
            return ServiceDefinition(code)  # a service without metadata has no definition
        _checked(response, lambda why: BackendMisconfigured(f"no service {code}: {why}"))
        wire = _parse(_DEFINITION, response)
        attributes = sorted(wire.attributes, key=lambda a: a.order)
        definition = ServiceDefinition(wire.service_code, tuple(a.public() for a in attributes))
        self._definitions[code] = definition
        return definition

    def _url(self, *segments: str) -> str:
        """Absolute, so an injected client needs no ``base_url``; segments are escaped."""
        path = "/".join(quote(segment, safe="") for segment in segments)
        return f"{self.config.base_url.rstrip('/')}/{path}"

    def _params(self, **params: str) -> dict[str, str]:
        if self.jurisdiction_id:
            params["jurisdiction_id"] = self.jurisdiction_id
        return params


# --- pure helpers -----------------------------------------------------------------------------


def _request_form(
    submission: Submission, definition: ServiceDefinition, dialect: Dialect | None = None
) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The POST fields (repeated keys kept) and, per wire name, the field it came from
    (under the spec's names too: the error texts of GeoReport servers use them)."""
    dialect = dialect or Dialect()
    fields: Mapping[str, str | Sequence[str]] = submission.fields
    form: list[tuple[str, str]] = []
    sent_as: dict[str, str] = {}
    where = fields.get(LOCATION_FIELD)
    point = _coordinates(where) if isinstance(where, str) else None
    lat, long = fields.get("lat"), fields.get("long")
    if isinstance(lat, str) and isinstance(long, str):
        form += [("lat", lat), ("long", long)]
        sent_as.update(lat="lat", long="long")
    elif point is not None:
        form += [("lat", point[0]), ("long", point[1])]
        sent_as.update(lat=LOCATION_FIELD, long=LOCATION_FIELD)
    if isinstance(where, str) and point is None:
        form.append((dialect.address_field, where))
        sent_as["address_string"] = LOCATION_FIELD
        sent_as[dialect.address_field] = LOCATION_FIELD
    summary: list[str] = []
    for name, value in fields.items():
        if name in (LOCATION_FIELD, "description") or name in sent_as:
            continue
        if name in CONTACT_FIELDS:
            form.append((name, str(value)))
            sent_as[name] = name
            continue
        attribute = definition.attribute(name)
        code = attribute.code if attribute else name
        sent_as[code] = name
        multiple = not isinstance(value, str) or (
            attribute is not None and attribute.datatype is Datatype.MULTIVALUELIST
        )
        values = _split(value) if multiple else [str(value)]
        wire = dialect.attribute(code)
        form += [(f"{wire}[]" if multiple else wire, v) for v in values]
        summary.append(f"{name}: {', '.join(values)}")
    text = str(fields.get("description") or "; ".join(summary))
    marker = _marker(submission.idempotency_key)
    form.append(("description", f"{text[: MAX_DESCRIPTION - len(marker) - 1]} {marker}".strip()))
    return form, sent_as


def _split(value: str | Sequence[str]) -> list[str]:
    """A list answer as is; a text one split on commas ("pothole, debris")."""
    parts = value.split(",") if isinstance(value, str) else value
    return [part.strip() for part in parts if part.strip()]


def _coordinates(text: str) -> tuple[str, str] | None:
    match = _COORDINATES.fullmatch(text)
    if match is None or abs(float(match[1])) > 90 or abs(float(match[2])) > 180:
        return None
    return match[1], match[2]


def _marker(idempotency_key: str) -> str:
    return f"[civicgate:{idempotency_key}]"


def _w3c(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _receipt(service_request_id: str, stage: Stage) -> Receipt:
    return Receipt(reference=service_request_id, stage=stage, backend_id=service_request_id)


def _stage(request: _Request, creation_window: timedelta = CREATION_WINDOW) -> Stage:
    """From the status and its notes; ``updated_datetime`` counts only beyond the
    creation window (servers stamp a new request's update a few microseconds late)."""
    if request.status == "closed":
        return Stage.APPROVED
    if request.status != "open":  # a vendor's extra status ("acknowledged", …) is progress
        return Stage.IN_REVIEW
    touched = (
        request.updated_datetime is not None
        and request.requested_datetime is not None
        and request.updated_datetime - request.requested_datetime > creation_window
    )
    return Stage.IN_REVIEW if request.status_notes or touched else Stage.RECEIVED


def _flag(value: str, name: str) -> bool:
    folded = value.strip().lower()
    if folded not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ValueError(f"open311 {name} must be true or false, not {value!r}")
    return folded in ("true", "1", "yes", "on")


def _note(request: _Request) -> str | None:
    parts = [
        request.status_notes,
        request.agency_responsible and f"agency: {request.agency_responsible}",
        request.expected_datetime and f"expected: {request.expected_datetime.isoformat()}",
    ]
    return "; ".join(p for p in parts if p) or None


def _rejection(errors: list[_Error], sent_as: Mapping[str, str]) -> SubmissionRejected:
    """Each error's description becomes the reason for every field it names; an attribute
    we did not send (a missing answer) is named by its lower-cased code, as in the catalogue."""
    field_errors: dict[str, str] = {}
    for error in errors:
        text = error.description
        named = [sent_as.get(code, code.lower()) for code in _ATTRIBUTE_REF.findall(text)]
        rest = _ATTRIBUTE_REF.sub("", text)
        if _LOCATION_REF.search(rest):
            named.append(sent_as.get("lat") or sent_as.get("address_string") or LOCATION_FIELD)
        named += [c.lower() for c in _CONTACT_REF.findall(rest)]
        for name in named:
            field_errors.setdefault(name, text)
    message = "; ".join(e.description for e in errors) or "the city refused the request"
    return SubmissionRejected(message, field_errors)


def _checked(
    response: httpx.Response,
    missing: Callable[[str], ConnectorError],
    rejected: Callable[[list[_Error]], ConnectorError] | None = None,
) -> httpx.Response:
    """Read GeoReport's error list before mapping a status: 401/403 or any 4xx blaming our
    configuration → ``BackendMisconfigured``; 404 → ``missing``; 400 → ``rejected``; 429
    and 5xx → ``BackendTransient``; any other 4xx means our request is wrong. Each error
    carries the status and an excerpt of the body."""
    status = response.status_code
    if response.is_success:
        return response
    try:
        errors = _ERRORS.validate_json(response.content)
    except ValidationError:
        errors = []
    message = "; ".join(e.description for e in errors) or f"HTTP {status}"
    if status in OUTAGE_STATUSES or status >= 500:
        raise BackendTransient.answered(response, f"HTTP {status}: {message}")
    ours = any(  # about our credentials or codes, not about one of the citizen's answers
        _CONFIG_REF.search(e.description) and not _ATTRIBUTE_REF.search(e.description)
        for e in errors
    )
    summary = excerpt(response.content)
    if status in (401, 403) or ours:
        raise BackendMisconfigured(f"HTTP {status}: {message}", status=status, excerpt=summary)
    if status == 404:
        raise _answered(missing(message), status, summary)
    if status == 400 and rejected is not None:
        raise _answered(rejected(errors), status, summary)
    raise BackendMisconfigured(f"HTTP {status}: {message}", status=status, excerpt=summary)


def _answered(error: ConnectorError, status: int, summary: str) -> ConnectorError:
    """A refusal built by a caller's callback, given the answer's status and excerpt."""
    if isinstance(error, BackendRefused):
        error.status, error.excerpt = status, summary
    return error


def _parse(wire_format: TypeAdapter[T], response: httpx.Response) -> T:
    """A 2xx body the connector cannot read is the city's fault: retry later."""
    try:
        return wire_format.validate_json(response.content)
    except ValidationError as exc:
        raise BackendTransient.answered(
            response, "malformed response from the Open311 server"
        ) from exc
