"""The gateway and the reference backend as real servers on loopback, for tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from alembic import command
from alembic.config import Config

from bot.main import create_app
from bot.settings import PROJECT_ROOT, Environment, Settings
from service_connectors.reference_backend import create_app as create_backend
from support.db import database_url, query
from support.servers import ThreadedServer, serve
from support.telegram_double import TelegramDouble
from support.twilio_double import TwilioDouble, twilio_settings

ACTION_TOKEN = "test-action-token"
BACKEND_API_KEY = "test-backend-key"
OPERATOR_TOKEN = "test-operator-token"
SMS_PUBLIC_URL = "https://sms.example.org"  # the public URL Twilio signs its webhooks for
TELEGRAM_TOKEN = "123456:TEST-telegram-token"
TELEGRAM_SECRET = "test-telegram-secret_1"


def alembic_config(url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logging"] = False
    return config


def migrate(url: str) -> None:
    command.upgrade(alembic_config(url), "head")


@contextmanager
def reference_backend(directory: Path) -> Iterator[ThreadedServer]:
    """The stand-in department, on its own SQLite file whichever database the gateway's is."""
    app = create_backend(f"sqlite:///{directory / 'backend.db'}", BACKEND_API_KEY, OPERATOR_TOKEN)
    with serve(app) as server:
        yield server


def gateway_settings(directory: Path, backend_url: str, **overrides: Any) -> Settings:
    """A test gateway's settings; its database is the test's (``support.db``)."""
    values: dict[str, Any] = {
        "environment": Environment.TEST,
        "database_url": database_url(directory),
        "rasa_url": "http://127.0.0.1:9",  # nothing listens: Rasa is "down" unless overridden
        "action_endpoint_token": ACTION_TOKEN,
        "reference_backend_url": backend_url,
        "reference_backend_api_key": BACKEND_API_KEY,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextmanager
def gateway(settings: Settings, port: int | None = None) -> Iterator[ThreadedServer]:
    migrate(settings.database_url)
    with serve(create_app(settings), port) as server:
        yield server


@contextmanager
def gateways(settings: Settings, count: int) -> Iterator[list[ThreadedServer]]:
    """``count`` replicas of the gateway on one database, each its own app and port."""
    with ExitStack() as replicas:
        yield [replicas.enter_context(gateway(settings)) for _ in range(count)]


@dataclass
class ChannelStack:
    """A gateway with SMS and Telegram configured, each against its provider's double."""

    server: ThreadedServer
    twilio: TwilioDouble
    telegram: TelegramDouble
    directory: Path

    @property
    def url(self) -> str:
        return self.server.url

    def inbound(self) -> list[str]:
        """The texts of the stored inbound messages, oldest first."""
        rows = query(
            self.directory, "SELECT text FROM messages WHERE direction='INBOUND' ORDER BY id"
        )
        return [row[0] for row in rows]


@contextmanager
def channel_stack(directory: Path, backend_url: str, **overrides: Any) -> Iterator[ChannelStack]:
    """The gateway on loopback with the Twilio and Telegram doubles as its providers
    (webhooks signed for ``SMS_PUBLIC_URL``, Telegram's carrying ``TELEGRAM_SECRET``)."""
    twilio, telegram = TwilioDouble(), TelegramDouble()
    with serve(twilio.app()) as twilio_server, serve(telegram.app()) as telegram_server:
        settings = gateway_settings(
            directory,
            backend_url,
            **twilio_settings(twilio_server.url, SMS_PUBLIC_URL),
            telegram_bot_token=TELEGRAM_TOKEN,
            telegram_webhook_secret=TELEGRAM_SECRET,
            telegram_api_base_url=telegram_server.url,
            **overrides,
        )
        with gateway(settings) as server:
            yield ChannelStack(server, twilio, telegram, directory)


def backend_id(directory: Path, reference: str) -> str:
    """The backend's own id of the application the citizen knows as ``reference`` (the
    gateway's, issue 24): what the reference backend's operator advances it by."""
    [(found,)] = query(
        directory, "SELECT backend_id FROM applications WHERE reference = :r", r=reference
    )
    assert found is not None, f"{reference} was not filed"
    return str(found)


def advance(backend_url: str, backend_id: str, stage: str | None = None) -> dict[str, Any]:
    """The backend's operator moves its application ``backend_id`` (its own reference)."""
    response = httpx.post(
        f"{backend_url}/operator/applications/{backend_id}/advance",
        json={"stage": stage} if stage else {},
        headers={"X-Operator-Token": OPERATOR_TOKEN},
    )
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result
