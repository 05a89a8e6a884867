"""The one interface every backend connector implements.

Shaped like python-telegram-bot's ``BaseRequest``: a lifecycle (``initialize`` /
``shutdown``), public ``@final`` methods that own error mapping, and abstract hooks that
only speak the backend's wire protocol. Callers never see ``httpx`` exceptions: a backend
that is down, slow or answering 5xx raises :class:`BackendUnavailable` (retry later);
a 4xx about the citizen's data raises :class:`SubmissionRejected` (ask again); a refused
credential (401/403) raises :class:`BackendMisconfigured` (page an operator, not the citizen).
"""

from __future__ import annotations

import abc
import enum
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
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


class BackendUnavailable(ConnectorError):  # noqa: N818 (public API)
    """Down, timing out or 5xx: nothing is wrong with the application, try again later."""


class ApplicationNotFound(ConnectorError):  # noqa: N818 (public API)
    """The backend does not know this reference."""


class BackendMisconfigured(ConnectorError):  # noqa: N818 (named like its siblings)
    """The backend refused our credentials or lacks a service we route to it.

    Neither retrying nor asking the citizen again helps: an operator must fix the config.
    """


class SubmissionRejected(ConnectorError):  # noqa: N818 (public API)
    """The backend refused the data; ``field_errors`` maps field name to its reason."""

    def __init__(self, message: str, field_errors: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.field_errors: dict[str, str] = dict(field_errors or {})


class CircuitBreaker:
    """Stops calling a backend that keeps failing, so a dead department is not hammered:
    after ``threshold`` outages in a row it opens for ``cooldown`` seconds, then lets one
    call through (half-open); a call the backend answers closes it again. Per process:
    each replica learns on its own, which is enough to spare the backend."""

    def __init__(
        self,
        threshold: int = 5,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold, self.cooldown, self.clock = threshold, cooldown, clock
        self.failures = 0
        self.opened_at: float | None = None

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

    def record(self, answered: bool) -> None:
        if answered:
            self.failures, self.opened_at = 0, None
            return
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
        return await self._guarded(lambda: self._submit(submission))

    @final
    async def get_status(self, backend_id: str) -> StatusReport:
        return await self._guarded(lambda: self._get_status(backend_id))

    async def _guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        if not self.breaker.allow():
            raise BackendUnavailable("circuit open: the backend failed repeatedly")
        try:
            result = await self._mapped(call)
        except BackendUnavailable:
            self.breaker.record(answered=False)
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
            raise BackendUnavailable(type(exc).__name__) from exc
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise BackendMisconfigured(f"HTTP {status}: credentials refused") from exc
            if status == 404:
                raise ApplicationNotFound(str(exc.request.url.path)) from exc
            if status >= 500 or status == 429:
                raise BackendUnavailable(f"HTTP {status}") from exc
            raise SubmissionRejected(f"HTTP {status}") from exc

    @abc.abstractmethod
    async def _list_services(self) -> list[RemoteService]: ...

    @abc.abstractmethod
    async def _describe_fields(self, service: Service) -> list[str]: ...

    @abc.abstractmethod
    async def _submit(self, submission: Submission) -> Receipt: ...

    @abc.abstractmethod
    async def _get_status(self, backend_id: str) -> StatusReport: ...
