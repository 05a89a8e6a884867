"""The gateway's FastAPI application: channels, Rasa's action/NLG endpoints, health
(``/healthz`` liveness, ``/readyz`` readiness) and ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.actions.router import router as rasa_router
from bot.attention import AttentionAlerts, AttentionFigures
from bot.backlog import Backlog
from bot.connectors import build_connectors, routed_catalogue
from bot.console import install as install_console
from bot.conversation import ConversationService
from bot.db.session import create_engine, session_factory
from bot.deps import Runtime, RuntimeDep
from bot.handoff import Handoffs
from bot.inbound import InboundWorker
from bot.metrics import BreakerStates, GatewayMetrics, WebhookTimer
from bot.nlg import load_responses
from bot.notify import Notifier
from bot.outbox import Outbox
from bot.rasa_client import RasaClient, RasaUnavailable
from bot.settings import PROJECT_ROOT, Settings, get_settings
from bot.sms import SmsTurns
from bot.submissions import SubmissionRetries
from bot.tracking import StatusTracker
from channels.base import ChannelServices
from channels.limits import BodySizeLimit
from channels.registry import enabled_channels
from service_connectors.catalogue import load_catalogue

logger = logging.getLogger(__name__)
OWN_LOGGERS = ("bot", "channels", "service_connectors")


def configure_logging(level: str) -> None:
    """Our loggers at ``LOG_LEVEL``, on stderr unless the host already set up handlers:
    uvicorn configures only its own loggers, so without this INFO (opt-outs, filings,
    handoffs) was dropped and warnings came out without time or logger."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level)


async def background_work(
    settings: Settings,
    stop: asyncio.Event,
    rounds: list[Callable[[], Awaitable[object]]],
) -> None:
    """Retries and leftovers, on every replica: leases keep them from doing work twice.
    Stopped between rounds (never cancelled mid-query), so shutdown leaves no half-work."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.worker_interval_seconds)
        if stop.is_set():
            return
        for work in rounds:
            try:
                await work()
            except Exception:  # keep the loop alive; the next round tries again
                logger.exception("background work failed")


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: a lone surrogate from the request
    (valid JSON, not encodable as UTF-8) is sent back as ``\\ud800`` instead of a 500."""

    def render(self, content: object) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("ascii")


async def invalid_request(_request: Request, exc: Exception) -> Response:
    """422 naming each field at fault and why, without echoing the input (the message
    text, up to a megabyte of it)."""
    assert isinstance(exc, RequestValidationError)
    errors = [{k: v for k, v in error.items() if k != "input"} for error in exc.errors()]
    return AsciiJSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


async def database_problem(engine: AsyncEngine) -> str | None:
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not ready", reported by name
        return type(exc).__name__
    return None


async def rasa_problem(rasa: RasaClient) -> str | None:
    try:
        status = await rasa.status()
    except RasaUnavailable as exc:
        return f"unreachable ({exc})"
    return None if status.get("model_file") else "no model loaded"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    engine = create_engine(
        settings.database_url, settings.database_pool_size, settings.database_max_overflow
    )
    sessions = session_factory(engine)
    metrics = GatewayMetrics()  # this app's registry: create_app may run many times
    rasa = RasaClient(
        str(settings.rasa_url).rstrip("/"),
        settings.rasa_token.get_secret_value() if settings.rasa_token else None,
        settings.rasa_timeout_seconds,
        metrics,
    )
    catalogue = routed_catalogue(settings, load_catalogue(settings.catalogue_path))
    outbox = Outbox(
        sessions, settings.sms_max_send_attempts, settings.delivery_retry_base_seconds, metrics
    )
    runtime = Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        rasa=rasa,
        catalogue=catalogue,
        connectors=build_connectors(settings, catalogue),
        responses=load_responses(PROJECT_ROOT / "bot" / "domain.yml"),
        handoffs=Handoffs(settings, sessions),
        outbox=outbox,
        metrics=metrics,
    )
    conversations = ConversationService(settings, sessions, rasa, runtime.handoffs, metrics)
    sms = SmsTurns(settings, sessions, conversations, outbox, catalogue, runtime.connectors)
    inbound = InboundWorker(sessions, {"sms": sms.handle})
    notifier = Notifier(settings, catalogue, outbox)
    retries = SubmissionRetries(
        sessions,
        runtime.connectors,
        catalogue,
        notifier,
        settings.submission_retry_base_seconds,
        metrics,
    )
    tracker = StatusTracker(settings, sessions, runtime.connectors, notifier)
    alerts = AttentionAlerts(sessions, timedelta(minutes=settings.needs_attention_alert_minutes))
    # In this order each round: leftovers of inbound turns, applications to file again,
    # statuses to poll, then everything queued for sending (notifications included).
    rounds: list[Callable[[], Awaitable[object]]] = [
        inbound.sweep,
        runtime.handoffs.run_due,
        retries.run_due,
        tracker.poll_due,
        outbox.send_due,
        alerts.run_due,
    ]
    channels = enabled_channels(
        ChannelServices(settings, conversations, inbound, outbox, catalogue, metrics)
    )
    teams = {settings.handoff_default_team, *settings.handoff_teams.values()}
    names = [channel.name for channel in channels]
    backlog = Backlog(sessions, names, runtime.connectors, teams)
    attention = AttentionFigures(sessions, runtime.connectors)
    metrics.watch(backlog, attention, BreakerStates(runtime.connectors))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for connector in runtime.connectors.values():
            await connector.initialize()
        for channel in channels:
            await channel.initialize()
        stop = asyncio.Event()
        worker = asyncio.create_task(background_work(settings, stop, rounds))
        try:
            yield
        finally:
            runtime.stopping.set()
            stop.set()
            await worker
            await inbound.wait_idle()
            for channel in channels:
                await channel.shutdown()
            for connector in runtime.connectors.values():
                await connector.shutdown()
            await rasa.aclose()
            await engine.dispose()

    app = FastAPI(title="civicgate", lifespan=lifespan)
    app.state.runtime = runtime
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_middleware(WebhookTimer, histogram=metrics.webhook_latency, channels=names)
    app.add_middleware(BodySizeLimit)  # outermost of ours: nothing reads a body past it
    app.include_router(rasa_router)
    app.include_router(tracker.router(), tags=["connectors"])
    install_console(app)
    for channel in channels:
        app.include_router(
            channel.router(), prefix=f"/channels/{channel.name}", tags=[channel.name]
        )
        for route, endpoint in channel.root_routes():
            app.add_api_route(route, endpoint, include_in_schema=False)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """Liveness: the process answers (nothing else is asked, so a database or Rasa
        outage never gets a healthy gateway restarted)."""
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    async def readyz(runtime: RuntimeDep) -> JSONResponse:
        """Readiness: the database and Rasa (with a model) answer; else 503 naming each
        one that failed."""
        checks = await asyncio.gather(database_problem(runtime.engine), rasa_problem(runtime.rasa))
        problems = {
            name: problem
            for name, problem in zip(("database", "rasa"), checks, strict=True)
            if problem is not None
        }
        if problems:
            return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics_page(request: Request) -> Response:
        await backlog.refresh()  # the shared database's state, read now
        await attention.refresh()
        body, content_type = metrics.exposition(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    return app
