"""Issue 24: what a backend answered, as the connectors report it (real httpx against the
loopback doubles): transient or refused, its status, a sanitised excerpt of its body and
Retry-After; and a circuit breaker that opens on outages, never on one application the
server keeps refusing or choking on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from service_connectors.base import (
    EXCERPT_LIMIT,
    BackendMisconfigured,
    BackendRefused,
    BackendTransient,
    CircuitBreaker,
    ConnectorError,
    SubmissionRejected,
    excerpt,
    retry_after,
)
from service_connectors.open311 import Open311Connector
from support.department_double import PermitsOffice
from support.open311_double import Answer, Open311Double
from support.servers import free_port, serve
from tests.service_connectors.test_circuit_breaker import Clock
from tests.service_connectors.test_open311 import pothole, started
from tests.service_connectors.test_rest_connector import started as started_rest
from tests.service_connectors.test_rest_connector import street_party

DJANGO_500 = (
    "<html><head><title>KeyError at /requests.json</title><style>pre { color: red }</style>"
    "<script>var x = 1;</script></head><body><h1>KeyError   at\n /requests.json</h1>"
    "<pre>&#x27;address&#x27;</pre><td>120 Bank St</td><td>ana@example.org</td>"
    "<td>+1 514 555 0100</td></body></html>"
)


@pytest.mark.parametrize(
    ("body", "personal", "expected"),
    [
        (DJANGO_500, ["120 Bank St"],
         "KeyError at /requests.json KeyError at /requests.json 'address' … … …"),
        ("<h1>Bad Request (400)</h1>", [], "Bad Request (400)"),
        (b"  Service\n\n  Unavailable \t", [], "Service Unavailable"),
        ('[{"code":400,"description":"Maria Lopez is not allowed"}]', ["Maria Lopez"],
         '[{"code":400,"description":"… is not allowed"}]'),
        ("x" * 1000, [], "x" * (EXCERPT_LIMIT - 1) + "…"),
        (None, [], ""),
    ],
    ids=["django html", "short html", "whitespace", "answers masked", "long", "none"],
)  # fmt: skip
def test_an_excerpt_is_short_plain_and_without_personal_data(
    body: str | bytes | None, personal: list[str], expected: str
) -> None:
    assert excerpt(body, personal) == expected
    assert len(excerpt(body, personal)) <= EXCERPT_LIMIT


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after(httpx.Response(429, headers={"Retry-After": "120"})) == 120.0
    assert retry_after(httpx.Response(429, headers={"Retry-After": later}), now) == 90.0
    assert retry_after(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    assert retry_after(httpx.Response(429)) is None


# --- each answer, through the Open311 connector ------------------------------------------


@pytest.fixture
def city() -> Iterator[tuple[Open311Double, str]]:
    double = Open311Double()
    with serve(double.app()) as server:
        yield double, server.url


@pytest.fixture
async def open311(city: tuple[Open311Double, str]) -> AsyncIterator[Open311Connector]:
    connector = await started(city[1], seconds=0.5)
    yield connector
    await connector.shutdown()


ERROR_LIST = '[{"code":400,"description":"Duplicate report"}]'


@pytest.mark.parametrize(
    ("answer", "error", "status", "summary", "after"),
    [
        (Answer(502, "<h1>Bad Gateway</h1>"), BackendTransient, 502, "Bad Gateway", None),
        (Answer(503, "down"), BackendTransient, 503, "down", None),
        (Answer(504, "slow"), BackendTransient, 504, "slow", None),
        (Answer(429, "wait", headers={"Retry-After": "30"}), BackendTransient, 429, "wait", 30.0),
        (Answer(500, DJANGO_500), BackendTransient, 500,
         "KeyError at /requests.json KeyError at /requests.json 'address' … … …", None),
        (Answer(400, ERROR_LIST, "application/json"), SubmissionRejected, 400, ERROR_LIST, None),
        (Answer(400, "<p>Bad Request</p>"), SubmissionRejected, 400, "Bad Request", None),
        (Answer(401, "no"), BackendMisconfigured, 401, "no", None),
        (Answer(503, "late", delay=1.0), BackendTransient, None, "", None),  # a timeout
    ],
    ids=["502", "503", "504", "429", "500 html", "400 list", "400 html", "401", "timeout"],
)  # fmt: skip
async def test_open311_answers_are_classified_with_status_and_excerpt(
    city: tuple[Open311Double, str],
    open311: Open311Connector,
    answer: Answer,
    error: type[ConnectorError],
    status: int | None,
    summary: str,
    after: float | None,
) -> None:
    city[0].script = [answer]
    with pytest.raises(error) as raised:
        await open311.submit(pothole(location="120 Bank St"))
    assert type(raised.value) is error
    assert isinstance(raised.value, BackendTransient | BackendRefused)
    assert (raised.value.status, raised.value.excerpt) == (status, summary)
    if isinstance(raised.value, BackendTransient):
        assert raised.value.retry_after == after
    if isinstance(raised.value, SubmissionRejected):
        assert raised.value.field_errors == {}  # no answer of the citizen's is named


async def test_connection_refused_is_transient_without_a_status() -> None:
    connector = await started(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(BackendTransient) as raised:
            await connector.submit(pothole())
    finally:
        await connector.shutdown()
    assert (raised.value.status, str(raised.value)) == (None, "ConnectError")


# --- the department REST connector --------------------------------------------------------


@pytest.fixture
def office(monkeypatch: pytest.MonkeyPatch) -> Iterator[PermitsOffice]:
    monkeypatch.setenv("EXAMPLE_PERMITS_API_TOKEN", "permits-test-token")
    office = PermitsOffice("permits-test-token")
    with serve(office.app) as server:
        office.url = f"{server.url}/api"
        yield office


@pytest.mark.parametrize(
    ("answer", "error", "status", "summary"),
    [
        ((500, "<h1>Server Error (500)</h1>", "text/html", {}), BackendTransient, 500,
         "Server Error (500)"),
        ((429, "busy", "text/plain", {"Retry-After": "7"}), BackendTransient, 429, "busy"),
        ((400, "<p>Ana Lopez: bad</p>", "text/html", {}), SubmissionRejected, 400, "…: bad"),
        ((409, '{"title": "conflict"}', "application/json", {}), SubmissionRejected, 409,
         '{"title": "conflict"}'),
    ],
    ids=["500", "429", "400 html", "409"],
)  # fmt: skip
async def test_rest_answers_are_classified_with_status_and_excerpt(
    office: PermitsOffice,
    answer: tuple[int, str, str, dict[str, str]],
    error: type[ConnectorError],
    status: int,
    summary: str,
) -> None:
    office.script = [answer]
    connector = await started_rest(office.url)
    try:
        with pytest.raises(error) as raised:
            await connector.submit(street_party())
    finally:
        await connector.shutdown()
    assert isinstance(raised.value, BackendTransient | BackendRefused)
    assert (raised.value.status, raised.value.excerpt) == (status, summary)
    if status == 429:
        assert isinstance(raised.value, BackendTransient) and raised.value.retry_after == 7.0


# --- the circuit breaker ------------------------------------------------------------------


def test_the_same_server_error_to_one_application_counts_once() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=Clock())
    for _ in range(10):
        breaker.record(answered=False, key="bad", signature=(500, "KeyError"))
    assert (breaker.failures, breaker.is_open) == (1, False)
    breaker.record(answered=False, key="bad", signature=(500, "another page"))
    assert breaker.failures == 2  # a different answer is news
    breaker.record(answered=False, key="other", signature=(503, "down"))
    assert breaker.is_open  # outages across applications open it
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=Clock())
    for _ in range(3):  # no answer at all (status None) is an outage each time
        breaker.record(answered=False, key="bad", signature=None)
    assert breaker.is_open


async def test_one_application_the_city_refuses_does_not_stop_the_good_ones(
    city: tuple[Open311Double, str],
) -> None:
    """The incident: one report the server chokes on (the same Django 500), retried,
    among good ones; and one it refuses (400). The breaker never opens, every good report
    is filed. Then real outages across applications do open it, and the fake clock's
    cool-down lets a trial through."""
    double, url = city
    clock = Clock()
    connector = await started(url)
    connector.breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    bad = pothole("bad", location="120 Bank St")
    try:
        for round_ in range(5):
            double.script = [Answer(500, DJANGO_500)]
            with pytest.raises(BackendTransient):
                await connector.submit(bad)
            double.script = [Answer(400, ERROR_LIST, "application/json")]
            with pytest.raises(SubmissionRejected):
                await connector.submit(pothole(f"refused-{round_}"))
            double.script = [Answer(500, DJANGO_500)]
            with pytest.raises(BackendTransient):
                await connector.submit(bad)
            receipt = await connector.submit(pothole(f"good-{round_}"))
            assert receipt.backend_id in double.requests
            assert not connector.breaker.is_open
        assert len(double.requests) == 5  # every good one filed
        assert connector.breaker.failures == 0

        double.script = [Answer(503, "down") for _ in range(3)]
        for key in ("a", "b", "c"):
            with pytest.raises(BackendTransient):
                await connector.submit(pothole(key))
        assert connector.breaker.is_open
        posts = double.posts
        with pytest.raises(BackendTransient, match="circuit open"):
            await connector.submit(pothole("good-later"))
        assert double.posts == posts  # not sent while resting
        clock.now += 31
        await connector.submit(pothole("good-later"))  # the trial, answered: closed
        assert not connector.breaker.is_open and len(double.requests) == 6
    finally:
        await connector.shutdown()
