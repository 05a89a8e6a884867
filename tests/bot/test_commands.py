"""Command words and what a form takes as an answer (issue 18), without the engine.

A message that is only EXIT, HELP or PERSON, or one of their translations or common
synonyms, is that request in every language; anything longer is not. While a form asks
a name, a place or an address, a valid answer is taken unless the classifier is far
surer than usual that it asks to stop, for help or for a person, and made only of the
words such requests are made of (the intents' training examples).
"""

from __future__ import annotations

from datetime import date

import pytest

from bot.actions.application import takes_answer
from bot.commands import CANCEL, HELP, command_payload
from bot.handoff import TALK_TO_HUMAN
from service_connectors.catalogue import ServiceField, load_catalogue

ALL = ("en", "fr", "ru")
TODAY = date(2026, 12, 8)
BIRTH = load_catalogue().get("birth_certificate")
assert BIRTH is not None
NAME, BORN, PLACE = (BIRTH.field(name) for name in ("child_full_name", "child_date_of_birth",
                                                     "place_of_birth"))  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("EXIT", CANCEL), ("exit", CANCEL), ("Exit.", CANCEL), ("ANNULER", CANCEL),
        ("annuler", CANCEL), ("Quitter", CANCEL), ("ВЫХОД", CANCEL), ("выход", CANCEL),
        ("отмена", CANCEL), ("cancel", CANCEL), ("stop", CANCEL), ("arrêter", CANCEL),
        ("HELP", HELP), ("help!", HELP), ("AIDE", HELP), ("aide", HELP), ("ПОМОЩЬ", HELP),
        ("menu", HELP), ("меню", HELP),
        ("PERSON", TALK_TO_HUMAN), ("CONSEILLER", TALK_TO_HUMAN), ("оператор", TALK_TO_HUMAN),
        # not command words: names, sentences, payloads, an answer that holds one
        ("Anna Stopa", None), ("Nathalie Arrêt", None), ("Henri Menu", None),
        ("Claude Personne", None), ("Иван Выходцев", None), ("exit now please", None),
        ("help me apply", None), ("/cancel", None), ("", None), ("arret", None),
    ],
)  # fmt: skip
def test_command_words(text: str, expected: str | None) -> None:
    assert command_payload(text, ALL) == expected


def test_a_command_word_works_in_every_language_only_if_supported() -> None:
    assert command_payload("ВЫХОД", ("en", "ru")) == CANCEL
    assert command_payload("CONSEILLER", ("en", "ru")) is None  # French is not offered
    assert command_payload("EXIT", ("fr",)) == CANCEL  # the English word always works


@pytest.mark.parametrize(
    ("field", "text", "intent", "confidence", "taken"),
    [
        # a valid name or place is an answer unless the classifier is far surer than usual
        # and every word is one of a request (the confidences are the model's, measured)
        (NAME, "Nathalie Arrêt", "cancel", 0.985, True),
        (NAME, "Anna Stopa", "cancel", 0.941, True),
        (NAME, "Luis Cancel", "cancel", 0.921, True),
        (NAME, "Henri Menu", "help", 0.949, True),
        (NAME, "Claude Personne", "talk_to_human", 0.971, True),
        (NAME, "Олег Отменов", "cancel", 0.924, True),
        (NAME, "Anna Ivanova", "cancel", 0.687, True),
        (PLACE, "Kingston General Hospital", "talk_to_human", 0.705, True),
        (NAME, "Anna Stopa", "greet", 0.99, True),  # not an interrupting intent
        (NAME, "forget it", "cancel", 0.918, False),  # a request's own words: a request
        (PLACE, "I want to stop", "cancel", 0.994, False),
        (PLACE, "je ne veux plus continuer", "cancel", 0.96, False),
        (NAME, "хватит", "cancel", 0.906, False),
        (NAME, "forget it", "cancel", 0.7, True),  # not far surer than usual
        # a command word (a payload from the gateway) always interrupts
        (NAME, "/cancel", "cancel", 1.0, False),
        (PLACE, "/help", "help", 1.0, False),
        (NAME, "/affirm", "affirm", 1.0, True),  # not a request: validation says what is wrong
        # an invalid answer is a request at the usual confidence
        (BORN, "i want to stop", "cancel", 0.7, False),
        (BORN, "i want to stop", "cancel", 0.5, True),  # unsure: "I could not read that date"
        # a valid date is an answer whatever the classifier says
        (BORN, "21 march 2019", "cancel", 0.99, True),
        (BORN, "5 января 1990 года", "help", 0.99, True),
    ],
)  # fmt: skip
def test_what_a_form_takes_as_its_answer(
    field: ServiceField, text: str, intent: str, confidence: float, taken: bool
) -> None:
    assert takes_answer(field, text, intent, confidence, TODAY) is taken
