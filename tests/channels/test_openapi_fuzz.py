"""The gateway's whole OpenAPI fuzzed in process (schemathesis over ``create_app``'s ASGI
app): whatever a generated request holds, the answer is never a 5xx and nothing raises.

The channels are reached as their providers reach them, so the fuzzer gets past their
doors: every Twilio webhook is signed with twilio's ``RequestValidator`` over the exact
form body that is sent (:func:`sign_twilio`), every Telegram update carries the secret
header, Rasa's endpoints get the action token. SMS and Telegram replies go to their loopback
doubles, and Rasa is a stand-in that answers (so ``/readyz`` is 200, not its 503).

Bounded and reproducible: a fixed number of examples per operation and mode, derandomized
(the same cases on every run, in CI too), no example database. The table below names every
operation; :func:`test_every_operation_is_fuzzed` fails when a route is added without it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi

from bot.main import create_app
from support.servers import ThreadedServer, serve
from support.stack import ACTION_TOKEN, gateway_settings, migrate
from support.telegram_double import BOT_TOKEN, SECRET_HEADER, TelegramDouble
from support.twilio_double import TwilioDouble, sign, twilio_settings

PUBLIC = "https://sms.example.org"
SECRET = "fuzz-telegram-secret_1"
EXAMPLES = 60  # per operation and generation mode: the whole run stays well under 60 s
TWILIO_PATHS = ("/channels/sms/twilio", "/channels/sms/twilio/status")
OWN_LOGGERS = ("bot", "channels", "service_connectors")
CHAT_COOKIE = "civicgate_chat"

# Every operation of the OpenAPI: how many examples it gets, and whether it has inputs
# to break (negative mode: a body, a query or header of some type; a path parameter that
# is any string, or no input at all, has none). The console's login hashes each password
# with argon2id, and its pages answer a login redirect: fewer examples there.
OPERATIONS: dict[str, tuple[int, bool]] = {
    "POST /rasa/actions": (EXAMPLES, False),
    "POST /rasa/nlg": (EXAMPLES, False),
    "POST /connectors/{kind}/events": (EXAMPLES, False),
    "GET /console/login": (5, False),
    "POST /console/login": (5, True),
    "POST /console/logout": (5, False),
    "GET /console": (5, False),
    "GET /console/api/queue": (5, False),
    "GET /console/handoffs/{handoff_id}": (5, False),
    "GET /console/api/handoffs/{handoff_id}/messages": (5, True),
    "POST /console/handoffs/{handoff_id}/claim": (5, False),
    "POST /console/handoffs/{handoff_id}/reply": (5, True),
    "POST /console/handoffs/{handoff_id}/note": (5, True),
    "POST /console/handoffs/{handoff_id}/transfer": (5, True),
    "POST /console/handoffs/{handoff_id}/hand-back": (5, False),
    "POST /console/handoffs/{handoff_id}/close": (5, True),
    "POST /console/handoffs/{handoff_id}/file": (5, False),
    "POST /console/handoffs/{handoff_id}/status": (5, True),
    "GET /console/continue": (5, False),
    "POST /console/continue": (5, True),
    "GET /console/events": (5, True),
    "GET /console/attention": (5, False),
    "POST /console/attention/{application_id}/retry": (5, False),
    "POST /console/attention/{application_id}/resend": (5, False),
    "POST /console/attention/{application_id}/contact": (5, False),
    "POST /channels/rest/webhook": (EXAMPLES, True),
    "GET /channels/webchat/webchat.js": (5, False),
    "POST /channels/webchat/messages": (EXAMPLES, True),
    "GET /channels/webchat/messages": (EXAMPLES, False),
    "POST /channels/sms/twilio": (EXAMPLES, True),
    "POST /channels/sms/twilio/status": (EXAMPLES, True),
    "POST /channels/telegram": (EXAMPLES, True),
    "GET /healthz": (5, False),
    "GET /readyz": (5, False),
}
CASES = [
    pytest.param(label, mode, id=f"{label}-{mode.value}")
    for label, (_examples, negative) in OPERATIONS.items()
    for mode in (GenerationMode.POSITIVE, *([GenerationMode.NEGATIVE] if negative else []))
]


class ErrorLog(logging.Handler):
    """The exceptions the gateway's own loggers caught and logged with their traceback:
    a background turn that failed is logged there, not raised to the request."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is not None:
            self.records.append(record)

    def lines(self) -> list[str]:
        return [
            f"{r.name}: {r.getMessage()} ({r.exc_info[1]!r})" for r in self.records if r.exc_info
        ]


@dataclass
class Fuzzed:
    app: FastAPI
    schema: Any
    errors: ErrorLog
    chat_cookie: str  # a web-chat session the page issued (signed: none can be made up)


def fake_rasa() -> FastAPI:
    """Rasa's endpoints the gateway calls: a model is loaded, every message answered."""
    app = FastAPI()

    @app.get("/status")
    async def status() -> dict[str, Any]:
        return {"model_file": "models/fuzz.tar.gz"}

    @app.post("/webhooks/rest/webhook")
    async def webhook(body: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"recipient_id": body.get("sender"), "text": "Noted."}]

    @app.post("/conversations/{sender}/tracker/events")
    async def events(sender: str) -> dict[str, Any]:
        return {"sender_id": sender}

    return app


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    directory = tmp_path_factory.mktemp("fuzz")
    errors = ErrorLog()
    with (
        serve(TwilioDouble().app()) as twilio,
        serve(TelegramDouble().app()) as telegram,
        serve(fake_rasa()) as rasa,
    ):
        app = create_app(gateway_settings_for(directory, twilio, telegram, rasa))
        for name in OWN_LOGGERS:
            logging.getLogger(name).addHandler(errors)
        try:
            schema = schemathesis.openapi.from_asgi("/openapi.json", app)
            with asgi.get_client(app) as client:
                cookie = client.get("/").cookies.get(CHAT_COOKIE)
            assert cookie, "the web-chat page issues a session cookie"
            yield Fuzzed(app, schema, errors, cookie)
            asgi.shutdown_lifespans()  # waits for the background turns the requests started
        finally:
            for name in OWN_LOGGERS:
                logging.getLogger(name).removeHandler(errors)
    assert errors.lines() == []


def gateway_settings_for(
    directory: Path, twilio: ThreadedServer, telegram: ThreadedServer, rasa: ThreadedServer
) -> Any:
    settings = gateway_settings(
        directory,
        "http://127.0.0.1:9",  # the reference backend is down: its callers must cope
        **twilio_settings(twilio.url, PUBLIC),
        rasa_url=rasa.url,
        telegram_bot_token=BOT_TOKEN,
        telegram_webhook_secret=SECRET,
        telegram_api_base_url=telegram.url,
        delivery_retry_base_seconds=0.1,
    )
    migrate(settings.database_url)
    return settings


def sign_twilio(case: Any) -> None:
    """Sign the case as Twilio signs a webhook: HMAC-SHA1 over ``PUBLIC_BASE_URL`` + path
    and the parameters the gateway will decode from the very body that is sent (a
    generated body need not be a form, nor UTF-8: it is read as the gateway reads it)."""
    kwargs = case.as_transport_kwargs(base_url=f"http://{asgi.HOST}")
    prepared = requests.Request(
        method=kwargs["method"],
        url=kwargs["url"],
        params=kwargs.get("params"),
        data=kwargs.get("data"),
        json=kwargs.get("json"),
        headers=kwargs.get("headers"),
    ).prepare()
    body = prepared.body or b""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    params = dict(parse_qsl(text, keep_blank_values=True))
    url = urlsplit(prepared.url or "")
    signed_url = PUBLIC + url.path + (f"?{url.query}" if url.query else "")
    case.headers = {**(case.headers or {}), "X-Twilio-Signature": sign(signed_url, params)}


def authenticate(case: Any, fuzzed: Fuzzed) -> None:
    """Each channel's credentials, so generated requests reach past authentication."""
    path = case.operation.path
    if path in TWILIO_PATHS:
        sign_twilio(case)
    elif path.startswith("/channels/webchat/"):
        case.cookies = {**(case.cookies or {}), CHAT_COOKIE: fuzzed.chat_cookie}
    elif path == "/channels/telegram":
        case.headers = {**(case.headers or {}), SECRET_HEADER: SECRET}
    elif path.startswith("/rasa/"):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {ACTION_TOKEN}"}


def _operation(schema: Any, label: str) -> Any:
    method, path = label.split(" ", 1)
    return schema[path][method]


@pytest.mark.parametrize(("label", "mode"), CASES)
def test_no_request_gets_a_5xx(fuzzed: Fuzzed, label: str, mode: GenerationMode) -> None:
    operation = _operation(fuzzed.schema, label)

    @settings(
        max_examples=OPERATIONS[label][0],
        derandomize=True,  # the same cases every run: CI reproduces what a developer saw
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def one_request(case: Any) -> None:
        authenticate(case, fuzzed)
        response = case.call()  # an unhandled exception in the app is raised here
        case.validate_response(response, checks=[not_a_server_error])

    one_request()
    assert fuzzed.errors.lines() == []


def test_every_operation_is_fuzzed(fuzzed: Fuzzed) -> None:
    paths = fuzzed.app.openapi()["paths"]
    labels = {f"{method.upper()} {path}" for path, ops in paths.items() for method in ops}
    assert labels == set(OPERATIONS)


def test_a_signed_twilio_case_passes_the_gateway_s_check(fuzzed: Fuzzed) -> None:
    """The signing above is right: a signed webhook is accepted, a tampered one refused."""
    operation = _operation(fuzzed.schema, "POST /channels/sms/twilio")
    body = {"MessageSid": "SMfuzz0001", "From": "+15145550100", "To": "+15005550006",
            "Body": "hello & goodbye", "NumMedia": "0"}  # fmt: skip
    case = operation.Case(body=body, media_type="application/x-www-form-urlencoded")
    sign_twilio(case)
    assert case.call().status_code == 200
    case.body = {**body, "Body": "hello & good bye"}  # signed over the old body
    assert case.call().status_code == 403


def test_a_telegram_case_with_the_secret_passes_the_gateway_s_check(fuzzed: Fuzzed) -> None:
    operation = _operation(fuzzed.schema, "POST /channels/telegram")
    update = {"update_id": 5, "message": {"message_id": 1, "date": 1_700_000_000,
              "chat": {"id": 42, "type": "private"}, "text": "hi"}}  # fmt: skip
    case = operation.Case(body=update, media_type="application/json")
    authenticate(case, fuzzed)
    assert case.call().status_code == 200
    case.headers = {SECRET_HEADER: "wrong"}
    assert case.call().status_code == 403
