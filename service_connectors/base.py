"""The one interface every backend connector implements.

Shaped like python-telegram-bot's ``BaseRequest``: a lifecycle (``initialize`` /
``shutdown``), public ``@final`` methods that own error mapping, and abstract hooks that
only speak the backend's wire protocol. Callers never see ``httpx`` exceptions: a backend
that is down, slow, overloaded (429) or answering 5xx raises :class:`BackendTransient`
(``BackendUnavailable``: retry later); one that answered and will not take the application
raises a :class:`BackendRefused` (a person must look): :class:`SubmissionRejected` for a
4xx about the data (the citizen is asked again when it names their answer), and
:class:`BackendMisconfigured` for refused credentials (401/403) or a service it lacks.
Both carry the HTTP ``status`` and a sanitised ``excerpt`` of the body.
"""

from __future__ import annotations

import abc
import enum
import html
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import ClassVar, TypeVar, final

import httpx

from service_connectors.catalogue import Service

T = TypeVar("T")


class Stage(enum.StrEnum):
    """Stages an application moves through, the same words for every backend."""

    RECEIVED = "received"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    READY_FOR_COLLECTION = "ready_for_collection"


@dataclass(frozen=True, slots=True)
class Submission:
    """An application ready to file. ``idempotency_key`` makes a retried submit harmless."""

    service_code: str
    fields: Mapping[str, str]
    idempotency_key: str
    language: str = "en"


@dataclass(frozen=True, slots=True)
class Receipt:
    """The backend took it. ``reference`` and ``backend_id`` are the backend's, shown to
    staff; the citizen keeps the gateway's reference, whatever the backend's looks like."""

    reference: str
    stage: Stage
    backend_id: str


@dataclass(frozen=True, slots=True)
class StatusReport:
    reference: str
    stage: Stage
    updated_at: datetime | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class RemoteService:
    """A service as the backend describes it (code and the field names it expects)."""

    code: str
    name: str
    field_names: tuple[str, ...] = ()


class ConnectorError(Exception):
    """Base of every error a connector raises."""


EXCERPT_LIMIT = 300
# Gateway and overload answers: the server is down or busy, never the application's fault.
OUTAGE_STATUSES = frozenset({408, 429, 502, 503, 504})
_HIDDEN = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_NUMBER = re.compile(r"\+?\d[\d ().-]{5,}\d")  # phone numbers, document numbers


def excerpt(body: bytes | str | None, personal: Iterable[object] = ()) -> str:
    """A short, loggable summary of a backend's error body: HTML tags (and scripts,
    styles, the head) stripped, entities decoded, whitespace collapsed, e-mail addresses,
    long numbers and every value in ``personal`` (the citizen's answers) masked; at most
    :data:`EXCERPT_LIMIT` characters. The title of an HTML page is kept (it names the
    error, e.g. Django's ``KeyError at /requests.json``)."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    title = re.search(r"<title[^>]*>(.*?)</title\s*>", text, re.IGNORECASE | re.DOTALL)
    text = _TAG.sub(" ", _HIDDEN.sub(" ", text))
    if title:
        text = f"{title.group(1)} {text}"
    text = html.unescape(text)
    for value in sorted({str(v) for v in personal if len(str(v).strip()) >= 3}, key=len)[::-1]:
        text = text.replace(value, "…")
    text = _NUMBER.sub("…", _EMAIL.sub("…", text))
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_LIMIT else text[: EXCERPT_LIMIT - 1] + "…"


def retry_after(response: httpx.Response, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header in seconds (delta-seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


class BackendTransient(ConnectorError):  # noqa: N818 (named like its siblings)
    """Down, timing out, overloaded or 5xx: nothing is known to be wrong with the
    application, try again later (after ``retry_after`` seconds when the backend said).
    ``status`` is the HTTP status (None: no answer at all); ``excerpt`` a sanitised
    summary of the body (see :func:`excerpt`)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        excerpt: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.excerpt, self.retry_after = status, excerpt, retry_after

    @classmethod
    def answered(cls, response: httpx.Response, message: str) -> BackendTransient:
        return cls(
            message,
            status=response.status_code,
            excerpt=excerpt(response.content),
            retry_after=retry_after(response),
        )


# The name every caller knew first: the same class.
BackendUnavailable = BackendTransient


class BackendRefused(ConnectorError):  # noqa: N818 (named like its siblings)
    """The backend answered and will not take this application as sent: retrying the
    same request does not help, a person must look (stage ``needs_attention``)."""

    def __init__(self, message: str, *, status: int | None = None, excerpt: str = "") -> None:
        super().__init__(message)
        self.status, self.excerpt = status, excerpt


class ApplicationNotFound(ConnectorError):  # noqa: N818 (public API)
    """The backend does not know this reference."""


class BackendMisconfigured(BackendRefused):
    """The backend refused our credentials or lacks a service we route to it.

    Neither retrying nor asking the citizen again helps: an operator must fix the config.
    """


class SubmissionRejected(BackendRefused):
    """The backend refused the data; ``field_errors`` maps field name to its reason. When
    it names a field the citizen answered, the citizen is asked again; otherwise it is a
    refusal like any other (a person must look)."""

    def __init__(
        self,
        message: str,
        field_errors: Mapping[str, str] | None = None,
        *,
        status: int | None = None,
        excerpt: str = "",
    ) -> None:
        super().__init__(message, status=status, excerpt=excerpt)
        self.field_errors: dict[str, str] = dict(field_errors or {})


class CircuitBreaker:
    """Stops calling a backend that keeps failing, so a dead department is not hammered:
    after ``threshold`` outages in a row it opens for ``cooldown`` seconds, then lets one
    call through (half-open); a call the backend answers closes it again. Per process:
    each replica learns on its own, which is enough to spare the backend.

    Only outages count: a refusal is an answer. A server error that one application gets
    again with the same body (``key`` and ``signature`` of :meth:`record`) counts once, so
    one application the server chokes on cannot open the breaker for everyone else."""

    MEMORY = 1024  # applications whose last server error is remembered

    def __init__(
        self,
        threshold: int = 5,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold, self.cooldown, self.clock = threshold, cooldown, clock
        self.failures = 0
        self.opened_at: float | None = None
        self._last_error: OrderedDict[str, object] = OrderedDict()

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None and self.clock() - self.opened_at < self.cooldown

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if self.is_open:
            return False
        self.opened_at = self.clock()  # half-open: this call is the trial, others wait
        return True

    def record(self, answered: bool, key: str | None = None, signature: object = None) -> None:
        if answered:
            self.failures, self.opened_at = 0, None
            if key is not None:
                self._last_error.pop(key, None)
            return
        if key is not None and signature is not None:
            if self._last_error.get(key) == signature:
                return  # the same answer to the same application: counted already
            self._last_error[key] = signature
            self._last_error.move_to_end(key)
            while len(self._last_error) > self.MEMORY:
                self._last_error.popitem(last=False)
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = self.clock()


@dataclass
class ConnectorConfig:
    base_url: str
    api_key: str | None = None
    timeout_seconds: float = 10.0
    options: dict[str, str] = field(default_factory=dict)
    breaker_threshold: int = 5
    breaker_cooldown_seconds: float = 30.0
    # Submission caps (bot.submissions): attempts, hours after the first, and how many
    # identical server errors in a row make a refusal.
    max_attempts: int = 12
    max_hours: float = 72.0
    same_error_refuses: int = 3


class ServiceConnector(abc.ABC):
    """Files applications with one backend kind and reads their status."""

    kind: ClassVar[str]
    # The backend pushes stage changes to the gateway's signed webhook: no polling needed.
    pushes_status: ClassVar[bool] = False

    def __init__(self, config: ConnectorConfig, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._client = client
        self._owns_client = client is None
        self.breaker = CircuitBreaker(config.breaker_threshold, config.breaker_cooldown_seconds)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError(f"{type(self).__name__} used before initialize()")
        return self._client

    async def initialize(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.config.base_url, timeout=self.config.timeout_seconds
            )

    async def shutdown(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None

    @final
    async def list_services(self) -> list[RemoteService]:
        return await self._guarded(self._list_services)

    @final
    async def describe_fields(self, service: Service) -> list[str]:
        """Field names the backend expects for ``service`` (to check the catalogue)."""
        return await self._guarded(lambda: self._describe_fields(service))

    @final
    async def submit(self, submission: Submission) -> Receipt:
        """File ``submission``. The excerpt of any error is stripped of its answers."""
        try:
            return await self._guarded(
                lambda: self._submit(submission), key=submission.idempotency_key
            )
        except (BackendTransient, BackendRefused) as exc:
            exc.excerpt = excerpt(exc.excerpt, submission.fields.values())
            raise

    @final
    async def get_status(self, backend_id: str) -> StatusReport:
        return await self._guarded(lambda: self._get_status(backend_id))

    async def _guarded(self, call: Callable[[], Awaitable[T]], key: str | None = None) -> T:
        if not self.breaker.allow():
            raise BackendTransient("circuit open: the backend failed repeatedly")
        try:
            result = await self._mapped(call)
        except BackendTransient as exc:
            # An answered server error is remembered per application (None: no answer).
            signature = None if exc.status is None else (exc.status, exc.excerpt)
            self.breaker.record(answered=False, key=key, signature=signature)
            raise
        except ConnectorError:
            self.breaker.record(answered=True)
            raise
        self.breaker.record(answered=True)
        return result

    @staticmethod
    async def _mapped(call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except ConnectorError:
            raise
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise BackendTransient(type(exc).__name__) from exc
        except httpx.HTTPStatusError as exc:
            response = exc.response
            status = response.status_code
            summary = excerpt(response.content)
            if status in (401, 403):
                raise BackendMisconfigured(
                    f"HTTP {status}: credentials refused", status=status, excerpt=summary
                ) from exc
            if status == 404:
                raise ApplicationNotFound(str(exc.request.url.path)) from exc
            if status >= 500 or status in OUTAGE_STATUSES:
                raise BackendTransient.answered(response, f"HTTP {status}") from exc
            raise SubmissionRejected(f"HTTP {status}", status=status, excerpt=summary) from exc

    @abc.abstractmethod
    async def _list_services(self) -> list[RemoteService]: ...

    @abc.abstractmethod
    async def _describe_fields(self, service: Service) -> list[str]: ...

    @abc.abstractmethod
    async def _submit(self, submission: Submission) -> Receipt: ...

    @abc.abstractmethod
    async def _get_status(self, backend_id: str) -> StatusReport: ...
