"""The production shape with the real engine: two gateways and two `rasa run` servers on
one PostgreSQL server (Rasa's tracker store beside the gateway's database), Redis as
Rasa's lock store. Every Twilio webhook of a Rasa turn is posted to both gateways at the
same moment: each is answered exactly once, no webhook fails, and one citizen's dialogue
continues whichever replica takes the next message."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from bot.devstack import StackConfig, ensure_model, running_stack
from support.db import database_url, query, wait_until
from support.replay import all_answered, inbound, post_everywhere
from support.servers import ThreadedServer, free_port, free_ports
from support.twilio_double import SmsPhone, TwilioDouble, twilio_settings
from tests.e2e.conftest import PUBLIC_BASE_URL

pytestmark = [pytest.mark.rasa, pytest.mark.postgresql_only]
MESSAGES = 120
PHONES = 30


@pytest.fixture
def replicas(
    tmp_path: Path, twilio_double: tuple[TwilioDouble, ThreadedServer]
) -> Iterator[StackConfig]:
    redis_url = os.environ.get("TEST_REDIS_URL")
    if not redis_url:
        pytest.fail(
            "the PostgreSQL run needs TEST_REDIS_URL (scripts/with-test-services.sh sets it)"
        )
    gateway_database = database_url(tmp_path)
    settings = {
        **twilio_settings(twilio_double[1].url, PUBLIC_BASE_URL),
        "sms_rate_limit_messages": MESSAGES,  # the phones text fast on purpose
        "quiet_hours_start": "00:00",
        "quiet_hours_end": "00:00",
    }
    config = StackConfig(
        # Replicas listen on consecutive ports: the base alone being free is not enough.
        gateway_port=free_ports(2),
        rasa_port=free_ports(2),
        backend_port=free_port(),
        data_dir=tmp_path / "stack",
        gateway_extra_env={key.upper(): str(value) for key, value in settings.items()},
        database_url=gateway_database,
        redis_url=f"{redis_url.rstrip('/')}/{os.getpid() % 16}",
        gateway_replicas=2,
        rasa_replicas=2,
    )
    try:
        with running_stack(config, ensure_model(), logs=config.data_dir):
            yield config
    finally:
        tracker = make_url(config.rasa_tracker_url)
        admin = sa.create_engine(
            tracker.set(drivername="postgresql+psycopg", database="postgres"),
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{tracker.database}" WITH (FORCE)')
        admin.dispose()


def test_two_replicas_answer_each_rasa_turn_once_and_share_the_dialogue(
    replicas: StackConfig, twilio_double: tuple[TwilioDouble, ThreadedServer], tmp_path: Path
) -> None:
    double = twilio_double[0]
    phones = [f"+1613555{n:04d}" for n in range(PHONES)]
    before = Counter(sent["To"] for sent in double.sent)
    messages = [inbound(f"SMe2e{n:06d}", phones[n % PHONES], "hello") for n in range(MESSAGES)]
    statuses = asyncio.run(post_everywhere(replicas.gateway_urls, PUBLIC_BASE_URL, messages))
    assert Counter(statuses) == {200: 2 * MESSAGES}

    wait_until(lambda: all_answered(tmp_path), timeout=300)
    stored = query(tmp_path, "SELECT count(*) FROM messages WHERE direction = 'INBOUND'")
    assert stored == [(MESSAGES,)]
    answered = Counter(sent["To"] for sent in double.sent) - before
    assert answered == {phone: MESSAGES // PHONES for phone in phones}

    # One citizen's dialogue continues whichever replica takes the next message.
    number = "+16135559999"
    first, second = (
        SmsPhone(url, PUBLIC_BASE_URL, number, double) for url in replicas.gateway_urls
    )
    assert "full name" in first.text("i need a birth certificate")
    assert "date of birth" in second.text("Maria Lopez")
    assert "born" in first.text("21/03/2019")
    assert "parent" in second.text("Ottawa")
