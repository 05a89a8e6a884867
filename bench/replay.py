"""Benchmark: Twilio retries meeting the original on another replica, on PostgreSQL.

Starts the production shape (``bot.devstack.running_stack``): N gateway replicas and M
Rasa servers on one PostgreSQL server, Redis as Rasa's lock store, the gateways' SMS
channel pointed at an in-process Twilio double. Every MessageSid is posted to every
gateway at the same moment; two phases, a keyword fast path (``HELP``, no engine) and a
Rasa turn (``hello``). Prints, per phase: HTTP statuses, MessageSids stored, replies
lost and duplicated (per phone, at the double), and the time to answer them all.

    .venv/bin/python bench/replay.py --database-url postgresql://postgres@127.0.0.1:5432/postgres \\
        --redis-url redis://127.0.0.1:6379/1 --messages 1000

Target (issue 17): 0 lost, 0 duplicated, 0 HTTP 5xx, on both phases.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bot.devstack import StackConfig, ensure_model, running_stack  # noqa: E402
from support.db import fresh_database  # noqa: E402
from support.replay import UNSENT, WAITING, inbound, post_everywhere  # noqa: E402
from support.servers import free_port, free_ports, serve  # noqa: E402
from support.twilio_double import TwilioDouble, twilio_settings  # noqa: E402

PUBLIC = "https://sms.example.org"


def count(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text(sql)).scalar_one())


def phase(
    name: str, body: str, stack: StackConfig, twilio: TwilioDouble, engine: sa.Engine,
    messages: int, phones: int, timeout: float,
) -> bool:  # fmt: skip
    numbers = [f"+1613{secrets.randbelow(10**7):07d}" for _ in range(phones)]
    sent_before = len(twilio.sent)
    stored_before = count(engine, "SELECT count(*) FROM messages WHERE direction = 'INBOUND'")
    batch = [
        inbound(f"SM{name}{n:06d}{secrets.token_hex(4)}", numbers[n % phones], body)
        for n in range(messages)
    ]
    started = time.perf_counter()
    statuses = asyncio.run(post_everywhere(stack.gateway_urls, PUBLIC, batch))
    posted = time.perf_counter() - started
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (count(engine, WAITING) or count(engine, UNSENT)):
        time.sleep(0.1)
    answered = time.perf_counter() - started
    stored = (
        count(engine, "SELECT count(*) FROM messages WHERE direction = 'INBOUND'") - stored_before
    )
    per_phone = Counter(m["To"] for m in twilio.sent[sent_before:])
    expected = {number: messages // phones for number in numbers}
    lost = sum(max(0, want - per_phone.get(number, 0)) for number, want in expected.items())
    duplicated = sum(max(0, got - expected.get(number, 0)) for number, got in per_phone.items())
    server_errors = sum(1 for status in statuses if status >= 500)
    print(
        f"{name}: {messages} MessageSids x {len(stack.gateway_urls)} replicas "
        f"({phones} phones): HTTP {dict(sorted(Counter(statuses).items()))}; stored {stored}; "
        f"lost {lost}; duplicated {duplicated}; 5xx {server_errors}; "
        f"posted in {posted:.1f} s, all answered in {answered:.1f} s",
        flush=True,
    )
    return lost == duplicated == server_errors == 0 and stored == messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="a PostgreSQL server (superuser)")
    parser.add_argument("--redis-url", required=True, help="Redis for Rasa's lock store")
    parser.add_argument("--gateway-replicas", type=int, default=2)
    parser.add_argument("--rasa-replicas", type=int, default=2)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--phones", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    database = fresh_database(args.database_url, "bench_replay")
    twilio = TwilioDouble()
    model = ensure_model()
    with tempfile.TemporaryDirectory() as data, serve(twilio.app()) as double:
        extra_env = {
            key.upper(): str(value)
            for key, value in {
                **twilio_settings(double.url, PUBLIC),
                "sms_rate_limit_messages": args.messages,  # the phones text fast on purpose
                "log_level": "WARNING",
            }.items()
        }
        config = StackConfig(
            gateway_port=free_ports(args.gateway_replicas),
            rasa_port=free_ports(args.rasa_replicas), backend_port=free_port(),
            data_dir=Path(data), gateway_extra_env=extra_env, database_url=database,
            redis_url=args.redis_url, gateway_replicas=args.gateway_replicas,
            rasa_replicas=args.rasa_replicas,
        )  # fmt: skip
        engine = sa.create_engine(make_url(database).set(drivername="postgresql+psycopg"))
        with running_stack(config, model, logs=Path(data)) as stack:
            ok = [
                phase(name, body, stack, twilio, engine, args.messages, args.phones, args.timeout)
                for name, body in (("keyword", "HELP"), ("rasa", "hello"))
            ]
        engine.dispose()
    print("target met" if all(ok) else "TARGET MISSED")
    sys.exit(0 if all(ok) else 1)


if __name__ == "__main__":
    main()
