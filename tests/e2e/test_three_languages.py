"""The birth-certificate application and the status query in French and Russian through
the real engine (one multilingual model), and a switch of language mid-form that keeps
what was already answered."""

from __future__ import annotations

import pytest

from bot.devstack import StackConfig
from bot.i18n import localizer
from service_connectors.catalogue import load_catalogue
from tests.e2e.test_conversation import REFERENCE, Citizen

pytestmark = pytest.mark.rasa
SERVICE = load_catalogue().get("birth_certificate")


def prompt(language: str, field: str) -> str:
    assert SERVICE is not None
    return localizer(language).gettext(SERVICE.field(field).prompt)


@pytest.mark.parametrize(
    ("language", "opening", "yes", "status"),
    [
        ("fr", "bonjour je voudrais un acte de naissance pour mon bebe", "oui", "statut"),
        ("ru", "здравствуйте мне нужно свидетельство о рождении ребенка", "да", "статус"),
    ],
)
def test_birth_certificate_and_status(
    stack: StackConfig, language: str, opening: str, yes: str, status: str
) -> None:
    words = localizer(language)
    citizen = Citizen(stack, f"e2e-{language}")
    assert prompt(language, "child_full_name") in citizen.text(opening)
    assert prompt(language, "child_date_of_birth") in citizen.text("Maria Lopez")
    assert prompt(language, "place_of_birth") in citizen.text("21/03/2019")
    assert prompt(language, "parent_full_name") in citizen.text("Ottawa")
    summary = citizen.text("Ana Lopez")
    assert "Maria Lopez" in summary and "Ottawa" in summary
    done = citizen.text(yes)
    found = REFERENCE.search(done)
    assert found is not None, done
    answer = citizen.text(f"{status} {found.group(1)}")
    assert words.gettext("Received") in answer, answer


def test_switching_language_mid_form_keeps_the_answers(stack: StackConfig) -> None:
    citizen = Citizen(stack, "e2e-switch")
    assert prompt("en", "child_full_name") in citizen.text("i need a birth certificate")
    assert prompt("en", "child_date_of_birth") in citizen.text("Maria Lopez")
    assert "français" in citizen.text("FR")
    assert prompt("fr", "place_of_birth") in citizen.text("21/03/2019")
    assert prompt("fr", "parent_full_name") in citizen.text("Ottawa")
    replies = citizen.say("Ana Lopez")
    assert "Maria Lopez" in " ".join(r["text"] for r in replies)  # answered before the switch
    assert replies[-1]["buttons"][0]["title"] == localizer("fr").gettext("Yes, send it")
