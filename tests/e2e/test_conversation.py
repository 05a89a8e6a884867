"""Whole conversations over the REST channel, through the real Rasa and gateway."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import httpx
import pytest

from bot.devstack import PROJECT_ROOT, StackConfig, rasa_base_env, rasa_command
from support.db import query
from support.stack import backend_id

pytestmark = pytest.mark.rasa
REFERENCE = re.compile(r"\b([A-Z]{2}-[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{6})\b")


class Citizen:
    def __init__(self, stack: StackConfig, sender: str) -> None:
        self.url = f"{stack.gateway_url}/channels/rest/webhook"
        self.sender = sender

    def say(self, message: str) -> list[dict[str, Any]]:
        response = httpx.post(
            self.url, json={"sender": self.sender, "message": message}, timeout=60
        )
        assert response.status_code == 200, response.text
        return list(response.json())

    def text(self, message: str) -> str:
        return "\n".join(reply["text"] for reply in self.say(message))


def apply_for_birth_certificate(citizen: Citizen) -> str:
    assert "Hello" in citizen.text("hi")
    assert "full name" in citizen.text("i need a birth certificat for my baby pls")
    assert "date of birth" in citizen.text("Maria Lopez")
    assert "born" in citizen.text("21/03/2019")
    assert "parent" in citizen.text("Ottawa")
    summary = citizen.text("Ana Lopez")
    assert "Maria Lopez" in summary and "Ottawa" in summary and "correct" in summary
    done = citizen.text("yes")
    reference = REFERENCE.search(done)
    assert reference is not None, done
    return reference.group(1)


def test_health_is_green_when_rasa_has_its_model(stack: StackConfig) -> None:
    response = httpx.get(f"{stack.gateway_url}/readyz")
    assert response.status_code == 200, response.text


def test_birth_certificate_then_status(stack: StackConfig) -> None:
    citizen = Citizen(stack, "e2e-applicant")
    reference = apply_for_birth_certificate(citizen)
    assert reference.startswith("BC-")
    ours = "SELECT provisional_reference FROM applications WHERE reference = :r"
    assert query(stack.data_dir, ours, r=reference) == [(reference,)]  # ours, not the backend's
    theirs = backend_id(stack.data_dir, reference)
    assert theirs != reference

    status = citizen.text(f"status {reference.lower()}")
    assert "Received" in status, status
    httpx.post(
        f"{stack.backend_url}/operator/applications/{theirs}/advance",
        json={},
        headers={"X-Operator-Token": stack.backend_operator_token},
    ).raise_for_status()
    assert "In review" in citizen.text(f"wheres my application {reference}")

    # Without a reference, the bot asks for it.
    assert "reference" in citizen.text("check my application status").lower()
    assert "In review" in citizen.text(reference)


def test_status_for_someone_else_needs_the_second_factor(stack: StackConfig) -> None:
    reference = apply_for_birth_certificate(Citizen(stack, "e2e-parent"))
    stranger = Citizen(stack, "e2e-stranger")
    question = stranger.text(f"status {reference}")
    assert "date of birth" in question and "Received" not in question
    assert "does not match" in stranger.text("01/01/2020")
    assert "Received" in stranger.text("21 march 2019")


def test_cancel_leaves_the_form(stack: StackConfig) -> None:
    citizen = Citizen(stack, "e2e-canceller")
    assert "full name" in citizen.text("i want to apply for a passport")
    assert citizen.text("cancel") == "Stop this application?"  # confirmed first (issue 18)
    assert "Nothing was sent" in citizen.text("1")
    assert "Hello" in citizen.text("hello")


def test_odd_messages_get_a_polite_reply(stack: StackConfig) -> None:
    citizen = Citizen(stack, "e2e-odd")
    assert "empty" in citizen.text("   ")
    assert "words" in citizen.text("😀😀🙏")
    assert "too long" in citizen.text("a" * 10_000)


def test_training_data_is_valid() -> None:
    result = subprocess.run(
        rasa_command(
            "data",
            "validate",
            "--domain",
            "bot/domain.yml",
            "--data",
            "bot/data",
            "intents/en",
            "--config",
            "config.yml",
        ),
        cwd=PROJECT_ROOT,
        env=rasa_base_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
