"""A real stack for end-to-end tests: the trained (or cached) model, `rasa run`, the
gateway and the reference backend as separate processes on free loopback ports, with
the gateway's SMS channel pointed at a Twilio double in this process, and the gateway on
the run's database (``CIVICGATE_TEST_DB``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.devstack import StackConfig, ensure_model, running_stack
from support.db import database_url
from support.open311_double import API_KEY as OPEN311_KEY
from support.open311_double import POTHOLE, STREETLIGHT, Open311Double
from support.servers import ThreadedServer, free_port, serve
from support.telegram_double import BOT_TOKEN, TelegramDouble
from support.twilio_double import TwilioDouble, twilio_settings

PUBLIC_BASE_URL = "https://civicgate.example.org"
TELEGRAM_SECRET = "e2e-telegram-secret"


@pytest.fixture(scope="session")
def twilio_double() -> Iterator[tuple[TwilioDouble, ThreadedServer]]:
    double = TwilioDouble()
    with serve(double.app()) as server:
        yield double, server


@pytest.fixture(scope="session")
def telegram_double() -> Iterator[tuple[TelegramDouble, ThreadedServer]]:
    double = TelegramDouble()
    with serve(double.app()) as server:
        yield double, server


@pytest.fixture(scope="session")
def open311_double() -> Iterator[tuple[Open311Double, ThreadedServer]]:
    double = Open311Double()
    with serve(double.app()) as server:
        yield double, server


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    twilio_double: tuple[TwilioDouble, ThreadedServer],
    telegram_double: tuple[TelegramDouble, ThreadedServer],
    open311_double: tuple[Open311Double, ThreadedServer],
) -> Iterator[StackConfig]:
    data_dir = tmp_path_factory.mktemp("stack")
    settings = {
        # The run's gateway database (SQLite in data_dir, or one on the PostgreSQL server);
        # Rasa's tracker store stays SQLite in data_dir.
        "database_url": database_url(data_dir),
        **twilio_settings(twilio_double[1].url, PUBLIC_BASE_URL),
        "telegram_bot_token": BOT_TOKEN,
        "telegram_webhook_secret": TELEGRAM_SECRET,
        "telegram_api_base_url": telegram_double[1].url,
        # No quiet hours here (start == end), whatever time of day the suite runs;
        # tests/bot/test_quiet_hours.py covers them.
        "quiet_hours_start": "00:00",
        "quiet_hours_end": "00:00",
        # Potholes and streetlights go to the city's Open311 endpoint (a double).
        "open311_base_url": open311_double[1].url,
        "open311_api_key": OPEN311_KEY,
        "open311_service_codes": json.dumps({"pothole": POTHOLE, "streetlight": STREETLIGHT}),
        "status_poll_interval_seconds": 1,
        # The call centre is always open here; office hours have their own tests.
        "office_hours": "mon-sun 00:00-24:00",
        # A wrong second factor delays the next answer; tests/bot/test_verification_limits.py
        # covers it on the gateway's clock.
        "verification_delay_seconds": 0,
    }
    config = StackConfig(
        gateway_port=free_port(),
        rasa_port=free_port(),
        backend_port=free_port(),
        data_dir=data_dir,
        gateway_extra_env={key.upper(): str(value) for key, value in settings.items()},
    )
    try:
        with running_stack(config, ensure_model(), logs=data_dir):
            yield config
    except Exception:
        for log in sorted(Path(data_dir).glob("*.log")):
            print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-4000:]}")
        raise
