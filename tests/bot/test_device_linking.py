"""LINK / LINK <code> / UNLINK over a real gateway (REST channel, Rasa down: the commands
never reach the engine), checked against the database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from bot.linking import Command, DeviceCommand, device_command
from support.db import execute, query
from support.servers import ThreadedServer
from support.stack import gateway, gateway_settings


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ThreadedServer]:
    with gateway(gateway_settings(tmp_path, "http://127.0.0.1:9")) as running:
        yield running


def say(server: ThreadedServer, sender: str, text: str) -> str:
    response = httpx.post(
        f"{server.url}/channels/rest/webhook", json={"sender": sender, "message": text}
    )
    assert response.status_code == 200, response.text
    return " ".join(reply["text"] for reply in response.json())


def citizen_of(tmp_path: Path, sender: str) -> str:
    rows = query(
        tmp_path,
        "SELECT citizen_id FROM channel_identities WHERE external_id = :sender",
        sender=sender,
    )
    return str(rows[0][0])


def code_from(reply: str) -> str:
    found = re.search(r"LINK (\d{6})", reply)
    assert found, reply
    return found.group(1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("link", DeviceCommand(Command.ISSUE)),
        ("LINK 123456", DeviceCommand(Command.REDEEM, "123456")),
        ("Link 123 456", DeviceCommand(Command.REDEEM, "123456")),
        ("link: 123-456", DeviceCommand(Command.REDEEM, "123456")),
        ("unlink", DeviceCommand(Command.UNLINK)),
        ("linked in", None),
        ("i want to link my phone", None),
        ("unlink 123456", None),
    ],
)
def test_device_commands_are_recognised(text: str, expected: DeviceCommand | None) -> None:
    assert device_command(text) == expected


def test_a_code_joins_two_devices_to_one_citizen_and_one_dialogue(
    server: ThreadedServer, tmp_path: Path
) -> None:
    reply = say(server, "laptop", "LINK")
    assert "15 minutes" in reply
    code = code_from(reply)
    assert "linked" in say(server, "phone", f"link {code}")
    assert citizen_of(tmp_path, "phone") == citizen_of(tmp_path, "laptop")
    laptop, phone = (
        query(
            tmp_path,
            "SELECT c.id, c.dialogue_id FROM conversations c JOIN channel_identities i"
            " ON i.id = c.identity_id WHERE i.external_id = :sender",
            sender=sender,
        )[0]
        for sender in ("laptop", "phone")
    )
    assert phone[1] == laptop[0]  # the phone now speaks in the laptop's dialogue
    assert "wrong or has expired" in say(server, "other", f"LINK {code}")  # single use
    assert len(query(tmp_path, "SELECT id FROM citizens")) == 2  # laptop+phone, other


def test_the_first_code_is_void_once_a_new_one_is_issued(
    server: ThreadedServer, tmp_path: Path
) -> None:
    first = code_from(say(server, "laptop", "LINK"))
    second = code_from(say(server, "laptop", "LINK"))
    if first != second:
        assert "wrong or has expired" in say(server, "phone", f"LINK {first}")
    assert "linked" in say(server, "phone", f"LINK {second}")


def test_an_expired_code_is_refused(server: ThreadedServer, tmp_path: Path) -> None:
    code = code_from(say(server, "laptop", "LINK"))
    execute(
        tmp_path, "UPDATE link_codes SET expires_at = :past", past=datetime(2020, 1, 1, tzinfo=UTC)
    )
    assert "wrong or has expired" in say(server, "phone", f"LINK {code}")
    assert citizen_of(tmp_path, "phone") != citizen_of(tmp_path, "laptop")


def test_guessing_is_limited_per_device(server: ThreadedServer, tmp_path: Path) -> None:
    code = code_from(say(server, "laptop", "LINK"))
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        assert "wrong or has expired" in say(server, "guesser", f"LINK {wrong}")
    assert "Too many wrong codes" in say(server, "guesser", f"LINK {code}")
    assert citizen_of(tmp_path, "guesser") != citizen_of(tmp_path, "laptop")
    assert "linked" in say(server, "phone", f"LINK {code}")  # the code itself still works


def test_unlink_gives_the_device_back_its_own_citizen_and_dialogue(
    server: ThreadedServer, tmp_path: Path
) -> None:
    assert "not linked" in say(server, "phone", "UNLINK")
    code = code_from(say(server, "laptop", "LINK"))
    say(server, "phone", f"LINK {code}")
    assert "no longer linked" in say(server, "phone", "unlink")
    assert citizen_of(tmp_path, "phone") != citizen_of(tmp_path, "laptop")
    assert query(
        tmp_path,
        "SELECT c.dialogue_id FROM conversations c JOIN channel_identities i"
        " ON i.id = c.identity_id WHERE i.external_id = 'phone'",
    ) == [(None,)]


def test_a_device_cannot_link_to_itself(server: ThreadedServer, tmp_path: Path) -> None:
    code = code_from(say(server, "laptop", "LINK"))
    assert "already linked" in say(server, "laptop", f"LINK {code}")
