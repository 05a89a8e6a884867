"""What the gateway counts as it works: messages, deliveries, filings and latencies.

Events of this process (Prometheus sums the replicas' counters): kept in one
:class:`GatewayMetrics` per app, with its own registry, because ``create_app`` is called
many times in one test process and the library's global registry refuses a second
metric of one name. The state of the shared database (backlogs, queues) is not counted
here but read at each scrape (:mod:`bot.backlog`). Labels are channel, connector and
outcome names only: never a phone number, a text or a reference.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Receive, Scope, Send

from service_connectors.base import ServiceConnector

# Rasa answers a turn in tens of milliseconds; its timeout is 20 s (RASA_TIMEOUT_SECONDS).
NLU_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    """One app's event metrics and the registry ``GET /metrics`` exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.messages_received = Counter(
            "civicgate_messages_received_total",
            "Inbound messages stored (a provider's repeated message id is not counted).",
            ["channel"],
            registry=registry,
        )
        self.messages_sent = Counter(
            "civicgate_messages_sent_total",
            "Messages sent to citizens: replies answered in the request (rest, webchat),"
            " outbox deliveries a provider took or a browser collected.",
            ["channel"],
            registry=registry,
        )
        self.deliveries = Counter(
            "civicgate_outbox_deliveries_total",
            "Outbox send outcomes: sent (the provider took it), retried (failed, queued"
            " again), failed (for good), suppressed (opted out or unreachable).",
            ["channel", "outcome"],
            registry=registry,
        )
        self.submission_attempts = Counter(
            "civicgate_submission_attempts_total",
            "Applications filed again by the background worker: accepted, failed (tried"
            " again later), refused (returned to the citizen) or needs_attention (a person"
            " must look).",
            ["connector", "outcome"],
            registry=registry,
        )
        self.needs_attention = Counter(
            "civicgate_applications_needs_attention_total",
            "Applications moved to needs_attention (a person must look), by connector and"
            " reason: refused (the backend will not take it), attempts_cap or time_cap"
            " (SUBMISSION_MAX_ATTEMPTS / SUBMISSION_MAX_HOURS reached). Alert on any increase.",
            ["connector", "reason"],
            registry=registry,
        )
        self.nlu_latency = Histogram(
            "civicgate_nlu_request_duration_seconds",
            "One NLU turn: the gateway's request to Rasa's REST channel (outcome ok or"
            " unavailable).",
            ["outcome"],
            buckets=NLU_BUCKETS,
            registry=registry,
        )
        self.webhook_latency = Histogram(
            "civicgate_webhook_request_duration_seconds",
            "Time to answer a channel's webhook (POST /channels/{channel}/...).",
            ["channel"],
            buckets=WEBHOOK_BUCKETS,
            registry=registry,
        )
        self.verification_failures = Counter(
            "civicgate_verification_failures_total",
            "Wrong second-factor answers checked (someone else asking an application's"
            " status); answers refused unchecked (too soon, locked) are not counted.",
            registry=registry,
        )
        self.verification_alerts = Counter(
            "civicgate_verification_alerts_total",
            "Applications whose wrong second-factor answers today reached"
            " VERIFICATION_ALERT_FAILURES (each also in the audit log): alert on any increase.",
            registry=registry,
        )

    def watch(self, *collectors: Collector) -> None:
        """Add figures computed at scrape time (this app's database, its connectors)."""
        for collector in collectors:
            self.registry.register(collector)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The registry in the format the scraper asked for (Prometheus text by default,
        OpenMetrics when its ``Accept`` asks); the body and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


# Counts nobody scrapes: for parts used without an app (tests, benchmarks, tools).
DETACHED = GatewayMetrics()


class BreakerStates:
    """Each connector's circuit breaker, as this process sees it (a breaker is per
    process): one series per state, 1 for the current one, and its failures in a row."""

    STATES = ("closed", "open", "half_open")

    def __init__(self, connectors: Mapping[str, ServiceConnector]) -> None:
        self.connectors = connectors

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        state, failures = families
        for name, connector in sorted(self.connectors.items()):
            breaker = connector.breaker
            if breaker.opened_at is None:
                current = "closed"
            else:  # open for the cool-down, then half-open: the next call is the trial
                current = "open" if breaker.is_open else "half_open"
            for candidate in self.STATES:
                state.add_metric([name, candidate], 1.0 if candidate == current else 0.0)
            failures.add_metric([name], breaker.failures)
        return families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                "civicgate_connector_breaker_state",
                "A connector's circuit breaker in this process: 1 for its state.",
                labels=["connector", "state"],
            ),
            GaugeMetricFamily(
                "civicgate_connector_breaker_consecutive_failures",
                "A connector's outages in a row in this process (the breaker opens at"
                " CONNECTOR_BREAKER_THRESHOLD).",
                labels=["connector"],
            ),
        ]


class WebhookTimer:
    """ASGI middleware timing ``POST /channels/{channel}/...`` by channel name only (never
    the path, which may carry more). Other paths and unknown channels pass untimed."""

    def __init__(self, app: ASGIApp, histogram: Histogram, channels: Collection[str]) -> None:
        self.app = app
        self.timers = {name: histogram.labels(name) for name in channels}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        timer = None
        if scope["type"] == "http" and scope["method"] == "POST":
            parts = scope["path"].split("/", 3)  # "", "channels", name, rest
            if len(parts) >= 3 and parts[1] == "channels":
                timer = self.timers.get(parts[2])
        if timer is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            timer.observe(time.perf_counter() - started)
