"""Choosing the citizen's language: keywords at any time, detection on first contact
(short messages never decide), the browser's language as a hint; stored per citizen."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from bot.conversation import FORM_WAITS
from bot.devstack import PROJECT_ROOT
from bot.languages import detect, language_keyword
from support.db import query
from support.driver import ActionDriver
from support.servers import ThreadedServer
from support.stack import gateway, gateway_settings

ALL = ("en", "fr", "ru")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hi", None), ("1", None), ("ok", None), ("merci", None), ("😀🙏", None),
        ("bonjour", "fr"), ("je veux un passeport", "fr"), ("ou en est ma demande", "fr"),
        ("i need a passport", "en"), ("where is my application", "en"),
        ("привет", "ru"), ("мне нужен паспорт", "ru"), ("где моя заявка BC-7K3Q9P", "ru"),
    ],
)  # fmt: skip
def test_detection_decides_only_when_the_text_is_clear(text: str, expected: str | None) -> None:
    assert detect(text, ALL) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FR", "fr"), ("français", "fr"), ("Francais", "fr"), ("EN", "en"), ("english", "en"),
        ("RU", "ru"), ("русский", "ru"), ("по-русски", "ru"), ("po russki", "ru"),
        ("french fries", None), ("en", "en"), ("ru 1", None),
    ],
)  # fmt: skip
def test_language_keywords(text: str, expected: str | None) -> None:
    assert language_keyword(text, ALL) == expected


def test_a_new_language_needs_no_code() -> None:
    assert language_keyword("Deutsch", ("en", "de")) == "de"  # its name, from Babel
    assert language_keyword("german", ("en", "de")) == "de"
    assert detect("ich brauche einen neuen Reisepass", ("en", "de")) == "de"


def test_an_unsupported_language_is_never_chosen() -> None:
    assert language_keyword("FR", ("en",)) is None
    assert detect("je veux un passeport", ("en",)) is None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ThreadedServer]:
    settings = gateway_settings(tmp_path, "http://127.0.0.1:9", supported_languages=ALL)
    with gateway(settings) as running:
        yield running


def say(server: ThreadedServer, sender: str, text: str) -> str:
    response = httpx.post(
        f"{server.url}/channels/rest/webhook", json={"sender": sender, "message": text}
    )
    assert response.status_code == 200
    return " ".join(reply["text"] for reply in response.json())


def languages(tmp_path: Path) -> dict[str, str | None]:
    rows = query(
        tmp_path,
        "SELECT i.external_id, c.language FROM channel_identities i"
        " JOIN citizens c ON c.id = i.citizen_id",
    )
    return dict(rows)


def test_first_clear_message_sets_the_language_and_short_ones_do_not(
    server: ThreadedServer, tmp_path: Path
) -> None:
    say(server, "a", "hi")
    say(server, "a", "1")
    assert languages(tmp_path)["a"] is None
    say(server, "a", "je voudrais un passeport svp")
    assert languages(tmp_path)["a"] == "fr"
    say(server, "a", "i need a passport please")  # detection is for first contact only
    assert languages(tmp_path)["a"] == "fr"


def test_a_keyword_switches_at_any_time(server: ThreadedServer, tmp_path: Path) -> None:
    say(server, "b", "мне нужен паспорт")
    assert languages(tmp_path)["b"] == "ru"
    say(server, "b", "EN")
    assert languages(tmp_path)["b"] == "en"
    say(server, "b", "français")
    assert languages(tmp_path)["b"] == "fr"


def test_the_web_chat_follows_the_browser_until_the_citizen_chooses(
    server: ThreadedServer, tmp_path: Path
) -> None:
    with httpx.Client(base_url=server.url, headers={"Accept-Language": "ru-RU,ru;q=0.9"}) as web:
        web.get("/").raise_for_status()
        assert web.post("/channels/webchat/messages", json={"message": "hi"}).status_code == 200
        assert list(languages(tmp_path).values()) == ["ru"]
        web.post("/channels/webchat/messages", json={"message": "EN"}).raise_for_status()
        assert list(languages(tmp_path).values()) == ["en"]


def test_answers_and_choices_never_set_the_language(server: ThreadedServer, tmp_path: Path) -> None:
    """Detection reads what a citizen says, not an answer (issue 18): not a reference, a
    date, a payload or a command word, and nothing while an application is being filled
    in ("Maria Fournier" is no French), known from the gateway's own draft: the engine is
    down here, and is never asked."""
    for text in ("BC-7K3Q9P", "21 mars 2019", "21 марта 2019 г.", "/apply_service", "AIDE"):
        say(server, "d", text)
    assert languages(tmp_path)["d"] is None
    driver = ActionDriver(server.url, tmp_path, "e")  # plays Rasa: the form starts
    driver.user("apply", "apply_service", service="birth_certificate")
    driver.run("validate_application_form")
    for text in ("Maria Fournier", "Анна Иванова", "Nathalie Arrêt", "Saint-Jean-sur-Richelieu"):
        say(server, "e", text)
    assert languages(tmp_path)["e"] is None
    say(server, "f", "где моя заявка BC-7K3Q9P")  # the words around a reference still count
    assert languages(tmp_path)["f"] == "ru"


def test_a_draft_waits_as_long_as_rasa_s_session() -> None:
    domain = yaml.safe_load((PROJECT_ROOT / "bot" / "domain.yml").read_text())
    minutes = domain["session_config"]["session_expiration_time"]
    assert timedelta(minutes=minutes) == FORM_WAITS
