"""Answers that derail the form (issue 18), through the real gateway and the real Rasa.

While a form waits for a name, a place, an address or a date, the answer fills it:
"Anna Stopa" or "Nathalie Arrêt" is no cancel, "Maria Fournier" no switch to French.
Only a command word (EXIT, HELP, PERSON and their translations) interrupts, and a
request to stop is confirmed first ("Stop this application?"): Yes stops, No asks the
open question again with the answers given so far kept.

The regression set answers every name, address and date mid-form in each supported
language and asserts each reply exactly: the form's next question, or the summary after
the last one. Conversations run concurrently (a fresh sender each), every one through
all the questions of its service, so each turn checks one more answer.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import pytest

from bot.actions.menus import main_menu_buttons
from bot.actions.status import ONLY_AN_EXAMPLE, STATUS_AFTER_FORM
from bot.conversation import LANGUAGE_SET
from bot.devstack import StackConfig
from bot.handoff import (
    BACK_TO_BOT,
    CALL_ME_BACK,
    LEAVE_MESSAGE,
    NOBODY_NOW,
    OFFER_CHOICES,
    QUEUED,
)
from bot.i18n import language_name, localizer
from service_connectors.catalogue import EXAMPLE_REFERENCE, FieldType, Service, load_catalogue
from support.db import query
from tests.e2e.test_conversation import Citizen, apply_for_birth_certificate

pytestmark = pytest.mark.rasa
CATALOGUE = load_catalogue()
Reply = dict[str, Any]

# Personal names of many cultures, some of them near a command or another language:
# "Stopa", "Arrêt", "Cancel", "Menu", "Personne", "Отменов" (отмена), "Выходцев" (выход),
# "Fournier" and "Mercredi" (French to a detector), Cyrillic, Arabic, Devanagari, Han,
# Hangul, Greek and Inuktitut syllabics.
NAMES = [
    # Slavic
    "Anna Ivanova", "Анна Иванова", "Иванова Анна", "Anna Stopa", "Олег Отменов",
    "Иван Выходцев", "Dmitri Volkov", "Дмитрий Волков", "Katarzyna Nowak",
    "Wojciech Kowalski", "Jiří Novák", "Zuzana Horváthová", "Milica Jovanović",
    "Olena Shevchenko", "Олена Шевченко", "Кузнецова Светлана Игоревна",
    "Nikolai Rimsky-Korsakov", "Ludmila Pavlichenko", "Ярослав Стопа", "Bogdan Wiśniewski",
    # French
    "Nathalie Arrêt", "Maria Fournier", "Jean-Luc Picard", "Marie-Ève Tremblay",
    "François Lefèvre", "Amélie Poulain", "Chloé Gagnon", "Étienne Bouchard",
    "Geneviève Côté", "Benoît Lapointe", "Hélène Dufresne", "Gaëlle Le Gall",
    "Henri Menu", "Claude Personne", "Jacques Sortais", "Josée Annulier",
    # Arabic
    "Fatima Al-Zahra", "Mohammed Ben Salah", "Yousef Haddad", "Layla Abdelrahman",
    "Omar El-Masri", "Aïcha Benali", "Karim Bouzid", "Nour El Houda Mansour",
    "Samira Khoury", "Khalid Al-Farsi", "فاطمة الزهراء", "محمد بن سلمان",
    # West African
    "Chukwuemeka Okafor", "Ngozi Adichie", "Adebayo Ogunleye", "Aminata Diallo",
    "Mamadou Traoré", "Kwame Mensah", "Akosua Boateng", "Fatou Ndiaye", "Oumar Sy",
    "Yaa Asantewaa", "Babajide Adeyemi", "Ousmane Sembène", "Awa Coulibaly",
    "Seydou Keïta", "Nnamdi Azikiwe",
    # South Asian
    "Priya Sharma", "Rajesh Kumar", "Aarav Patel", "Ananya Iyer", "Harpreet Kaur",
    "Gurpreet Singh Dhillon", "Lakshmi Venkataraman", "Nusrat Jahan", "Sunil Perera",
    "Kavya Reddy", "Arjun Nair", "Deepika Chatterjee", "Thilini Wijesinghe",
    "प्रिया शर्मा", "Mohammed Abdul Rahman",
    # Chinese
    "Wang Fang", "Li Wei", "Zhang Wei", "Liu Yang", "Chen Jing", "Huang Xiaoming",
    "Xu Mingzhe", "Ho Chi Wing", "Lee Ka Ho", "王芳", "李伟", "張偉",
    # Indigenous Canadian
    "Tantoo Cardinal", "Buffy Sainte-Marie", "Tanya Tagaq", "Susan Aglukark",
    "Alanis Obomsawin", "Wab Kinew", "Jordin Tootoo", "Kenojuak Ashevak",
    "Ovide Mercredi", "Georges Erasmus", "Jody Wilson-Raybould", "Autumn Peltier",
    "Shannen Koostachin", "Mumilaaq Qaqqaq", "Sheila Watt-Cloutier", "ᑭᓄᔪᐊᖅ ᐋᓯᕙᒃ",
    "Mary Two-Axe Earley",
    # Elsewhere
    "María José García López", "Luis Cancel", "Nguyễn Văn An", "Trần Thị Mai",
    "Kim Min-jun", "김민준", "Ayşe Yılmaz", "Γιώργος Παπαδόπουλος", "Siobhán O'Connor",
    "Seán Ó Briain", "Mary-Kate O’Brien", "Sato Yuki",
]  # fmt: skip

# Where a child was born, as typed in each language.
PLACES = {
    "en": ["Ottawa", "Toronto", "St. John's", "Thunder Bay", "Iqaluit", "Moose Jaw",
           "Medicine Hat", "Kingston General Hospital", "Lagos", "Mumbai"],
    "fr": ["Montréal", "Trois-Rivières", "Saint-Jean-sur-Richelieu", "Sept-Îles",
           "Saint-Louis-du-Ha! Ha!", "hôpital Sainte-Justine", "Gatineau", "Dakar", "Lyon",
           "Chicoutimi"],
    "ru": ["Москва", "Санкт-Петербург", "Нижний Новгород", "Ростов-на-Дону", "Новосибирск",
           "Казань", "роддом № 3, Екатеринбург", "Торонто", "Алматы", "Киров"],
}  # fmt: skip

ADDRESSES = {
    "en": [
        "12 King St, Ottawa", "120 Bank St", "45 Elgin Street, Apt 3",
        "1600 Main St W, Hamilton", "Unit 5, 200 Bay St, Toronto", "PO Box 123, Iqaluit",
        "RR 2, Site 4, Box 9, Moose Jaw", "3-455 Rideau St", "#402 - 1010 Pender St W, Vancouver",
        "1 Yonge Street", "77 Exit Road, Sudbury", "9 Help Lane, Kenora", "250 Stop Street",
        "18 Cancel Court, Barrie", "Apartment 12B, 300 Queen St E", "22 Maple Ave, Halifax NS",
        "5 Person Drive, Regina", "1010 Portage Ave, Winnipeg MB R3G 0R6",
        "44 Water St, St. John's", "Bank St at Gladstone Ave", "16 Sussex Drive",
        "2 Bloor St W, suite 700", "88 Jasper Ave NW, Edmonton", "3 Frontenac Rd, Kingston",
        "601 Lakeshore Blvd", "10 rue Principale, Moncton", "140 Main St, Whitehorse YT",
        "7 Iglu Street, Rankin Inlet", "99 Wellington St", "Lot 4, Concession 6, Ayr",
    ],
    "fr": [
        "12 rue Saint-Denis, Montréal", "45, boulevard René-Lévesque Est",
        "app. 3, 1200 avenue du Parc", "8 chemin du Lac, Sept-Îles", "10 rue de l'Arrêt, Québec",
        "CP 45, Rimouski", "3 place d'Youville", "1500 rue Sherbrooke Ouest, bureau 200",
        "22 rue des Érables, Gatineau", "7, rang Saint-Joseph, Sainte-Anne",
        "450 boul. Talbot, Chicoutimi", "14 rue Annule, Laval", "2 avenue de la Sortie, Lévis",
        "9 rue Aide, Sherbrooke", "300 rue du Stop, Trois-Rivières", "55 côte du Palais, Québec",
        "18 impasse des Lilas", "1 rue de la Paix, 75002 Paris", "6 allée des Pins, Longueuil",
        "120, 3e Avenue, Val-d'Or", "4400 boulevard Laurier, Sainte-Foy",
        "77 rue Principale Nord, Granby", "5 rue du Quai, Gaspé", "900 rue Wellington, Verdun",
        "2 montée Masson, Terrebonne", "16 rue Saint-Paul Ouest", "33 route 132, Matane",
        "casier postal 12, Kuujjuaq", "81 rue King Est, Sherbrooke", "11 rue Racine, Jonquière",
    ],
    "ru": [
        "ул. Ленина, д. 5, кв. 12, Москва", "Невский проспект, 28, Санкт-Петербург",
        "пр-т Мира 10-45", "г. Казань, ул. Баумана, 7", "Тверская 1", "ул. Выходная, 3",
        "ул. Отмены 14", "пер. Стопный, 2", "Садовая ул., д. 17, корп. 2, кв. 88",
        "Ростов-на-Дону, ул. Пушкинская 101", "мкр. Северный, д. 4", "ул. Гагарина 25-3",
        "Новосибирск, Красный проспект, 1", "ул. Помощи 9", "а/я 15, Екатеринбург",
        "ул. Кирова, дом 8", "Москва, Кутузовский пр., 30", "пл. Революции 2",
        "ул. Мира 1, с. Ивановка", "Ленинградское шоссе, 16А, стр. 3", "ул. Оператора 5",
        "Бульвар Шевченко, 14", "12 King St, Ottawa", "ул. Советская, 44, Киров",
        "наб. реки Фонтанки, 90", "Нижний Новгород, ул. Большая Покровская, 3",
        "ул. 8 Марта, 11", "ул. Челюскинцев 7а", "ул. Лесная, д. 1, кв. 1", "Тверская, 7",
    ],
}  # fmt: skip

DATES = {
    "en": [
        ("21/03/2019", date(2019, 3, 21)), ("05/11/1980", date(1980, 11, 5)),
        ("1980-11-05", date(1980, 11, 5)), ("5.11.80", date(1980, 11, 5)),
        ("21 march 2019", date(2019, 3, 21)), ("March 21, 2019", date(2019, 3, 21)),
        ("3rd of May 1990", date(1990, 5, 3)), ("12 Dec 1975", date(1975, 12, 12)),
        ("July 4 1976", date(1976, 7, 4)), ("29/02/2016", date(2016, 2, 29)),
        ("01-01-2000", date(2000, 1, 1)), ("31.12.1999", date(1999, 12, 31)),
        ("7 Aug 2008", date(2008, 8, 7)), ("15 June 1965", date(1965, 6, 15)),
        ("2 Feb 1950", date(1950, 2, 2)), ("1 april 2001", date(2001, 4, 1)),
        ("14/7/89", date(1989, 7, 14)), ("30 September 1944", date(1944, 9, 30)),
        ("November 11 1918", date(1918, 11, 11)), ("9 Jan 2020", date(2020, 1, 9)),
        ("2012/06/30", date(2012, 6, 30)), ("25 december 1970", date(1970, 12, 25)),
        ("6 oct 1985", date(1985, 10, 6)), ("18-08-1962", date(1962, 8, 18)),
        ("10 10 2010", date(2010, 10, 10)), ("May 5, 1955", date(1955, 5, 5)),
        ("3/3/03", date(2003, 3, 3)), ("28 Feb 1999", date(1999, 2, 28)),
        ("17 nov 2017", date(2017, 11, 17)), ("1st July 1967", date(1967, 7, 1)),
    ],
    "fr": [
        ("21/03/2019", date(2019, 3, 21)), ("1er mars 2019", date(2019, 3, 1)),
        ("le 3 février 1985", date(1985, 2, 3)), ("12 août 2001", date(2001, 8, 12)),
        ("15 juillet 1975", date(1975, 7, 15)), ("3 déc. 1999", date(1999, 12, 3)),
        ("25 décembre 1990", date(1990, 12, 25)), ("14 juillet 1989", date(1989, 7, 14)),
        ("1er janvier 2000", date(2000, 1, 1)), ("8 mai 1945", date(1945, 5, 8)),
        ("30 septembre 1960", date(1960, 9, 30)), ("11 novembre 1918", date(1918, 11, 11)),
        ("6 avril 2006", date(2006, 4, 6)), ("24 juin 1980", date(1980, 6, 24)),
        ("2 fevrier 2002", date(2002, 2, 2)), ("17 octobre 1977", date(1977, 10, 17)),
        ("5.11.80", date(1980, 11, 5)), ("31-12-1999", date(1999, 12, 31)),
        ("29 févr. 2016", date(2016, 2, 29)), ("le 9 janv. 2020", date(2020, 1, 9)),
        ("20 aout 1968", date(1968, 8, 20)), ("1 juil. 1967", date(1967, 7, 1)),
        ("13 mars 1955", date(1955, 3, 13)), ("7 sept. 2007", date(2007, 9, 7)),
        ("2019-03-21", date(2019, 3, 21)), ("19 nov. 1991", date(1991, 11, 19)),
        ("4 avr. 1994", date(1994, 4, 4)), ("28/02/73", date(1973, 2, 28)),
        ("16 mai 2016", date(2016, 5, 16)), ("le 1er octobre 2010", date(2010, 10, 1)),
    ],
    "ru": [
        ("21.03.2019", date(2019, 3, 21)), ("21 марта 2019", date(2019, 3, 21)),
        ("5 января 1990 года", date(1990, 1, 5)), ("30 ноября 1988", date(1988, 11, 30)),
        ("7 сент. 2010", date(2010, 9, 7)), ("21 марта 2019 г.", date(2019, 3, 21)),
        ("12 апреля 1961", date(1961, 4, 12)), ("9 мая 1945", date(1945, 5, 9)),
        ("1 сентября 2000", date(2000, 9, 1)), ("31 декабря 1999", date(1999, 12, 31)),
        ("8 марта 1975", date(1975, 3, 8)), ("23 февраля 1980", date(1980, 2, 23)),
        ("4 ноября 2005", date(2005, 11, 4)), ("12 июня 1990", date(1990, 6, 12)),
        ("22 июля 1971", date(1971, 7, 22)), ("15 августа 1983", date(1983, 8, 15)),
        ("3 октября 1993", date(1993, 10, 3)), ("05.11.80", date(1980, 11, 5)),
        ("29.02.2016", date(2016, 2, 29)), ("1 янв. 2001", date(2001, 1, 1)),
        ("14 фев 2014", date(2014, 2, 14)), ("2019-03-21", date(2019, 3, 21)),
        ("6 июня 1999", date(1999, 6, 6)), ("19 дек. 1966", date(1966, 12, 19)),
        ("25.12.1991", date(1991, 12, 25)), ("7 ноября 1917 г.", date(1917, 11, 7)),
        ("10 апр 2010", date(2010, 4, 10)), ("18 мая 1999 года", date(1999, 5, 18)),
        ("2 окт. 1972", date(1972, 10, 2)), ("13/01/2013", date(2013, 1, 13)),
    ],
}  # fmt: skip

LANGUAGES = ("en", "fr", "ru")
PARALLEL = 8  # conversations at once: enough to keep Rasa and the gateway busy


def service(code: str) -> Service:
    found = CATALOGUE.get(code)
    assert found is not None
    return found


BIRTH, ADDRESS = service("birth_certificate"), service("address_change")


def start_payload(code: str) -> str:
    return "/apply_service" + json.dumps({"service": code})


def intro(language: str, of: Service) -> Reply:
    words = localizer(language)
    count = len(of.fields)
    text = words.ngettext(
        "Let's apply for: {service}. I will ask {count} question. Reply EXIT at any time to stop.",
        "Let's apply for: {service}. I will ask {count} questions. Reply EXIT at any time to stop.",
        count,
    )
    return {"text": text.format(service=words.gettext(of.name), count=count)}


def question(language: str, of: Service, number: int) -> Reply:
    """The form's question ``number`` (1-based), as the bot asks it."""
    words = localizer(language)
    progress = words.gettext("({number} of {total})").format(number=number, total=len(of.fields))
    return {"text": f"{words.gettext(of.fields[number - 1].prompt)} {progress}"}


def summary(language: str, of: Service, shown: list[str]) -> Reply:
    """The summary before sending, with the answers as shown (dates in words)."""
    words = localizer(language)
    lines = [words.gettext("Please check your application for: {service}")]
    lines[0] = lines[0].format(service=words.gettext(of.name))
    lines += [f"- {words.gettext(f.label)}: {v}" for f, v in zip(of.fields, shown, strict=True)]
    lines.append(words.gettext("Is everything correct?"))
    return {
        "text": "\n".join(lines),
        "buttons": [
            {"title": words.gettext("Yes, send it"), "payload": "1"},
            {"title": words.gettext("Change something"), "payload": "2"},
        ],
    }


def stop_question(language: str) -> Reply:
    words = localizer(language)
    return {
        "text": words.gettext("Stop this application?"),
        "buttons": [
            {"title": words.gettext("Yes"), "payload": "/affirm"},
            {"title": words.gettext("No"), "payload": "/deny"},
        ],
    }


def stopped(language: str) -> Reply:
    words = localizer(language)
    return {
        "text": words.gettext(
            "OK, I have stopped. Nothing was sent. Reply HELP to see what I can do."
        )
    }


def help_menu(language: str) -> Reply:
    words = localizer(language)
    return {
        "text": words.gettext("Here is what I can do. Choose an option:"),
        "buttons": [{"title": b.title, "payload": b.payload} for b in main_menu_buttons(words)],
    }


def language_set(language: str) -> Reply:
    text = localizer(language).gettext(LANGUAGE_SET)
    return {"text": text.format(language=language_name(language))}


@dataclass(frozen=True)
class Script:
    """One conversation: a service's answers, each with how the summary shows it."""

    language: str
    of: Service
    answers: tuple[tuple[str, str], ...]  # (typed, shown)


def scripts() -> list[Script]:
    """Per language: every address (with a name and two dates) in a change of address,
    the other names two by two (with a date and a place) in birth certificates."""
    found = []
    for language in LANGUAGES:
        words = localizer(language)
        dates = [(typed, words.date(value)) for typed, value in DATES[language]]
        places = PLACES[language]
        # A moving date may be ahead: "5.11.80" is 2080 there, so it has a 4-digit year.
        moves = [shown for shown in dates if re.search(r"\d{4}", shown[0])]
        for n, address in enumerate(ADDRESSES[language]):
            name = NAMES[n]
            answers = ((name, name), dates[n], (address, address), moves[-1 - n % len(moves)])
            found.append(Script(language, ADDRESS, answers))
        rest = NAMES[len(ADDRESSES[language]) :]
        rest += NAMES[: len(rest) % 2]  # an odd one out answers with the first name
        for n in range(0, len(rest) - 1, 2):
            child, parent = rest[n], rest[n + 1]
            place = places[(n // 2) % len(places)]
            born = dates[(n // 2) % len(dates)]
            answers = ((child, child), born, (place, place), (parent, parent))
            found.append(Script(language, BIRTH, answers))
    return found


@dataclass
class Mismatch:
    sender: str
    sent: str
    expected: list[Reply]
    got: list[Reply]


async def play(
    client: httpx.AsyncClient, url: str, sender: str, script: Script, gate: asyncio.Semaphore
) -> list[Mismatch]:
    """One conversation, every reply compared; where it went wrong, if anywhere."""
    language, of = script.language, script.of
    turns: list[tuple[str, list[Reply]]] = []
    if language != "en":  # English stays the unset default: detection must not decide
        turns.append((language.upper(), [language_set(language)]))
    turns.append((start_payload(of.code), [intro(language, of), question(language, of, 1)]))
    for number, (typed, _shown) in enumerate(script.answers, start=1):
        last = number == len(of.fields)
        after = summary(language, of, [s for _t, s in script.answers]) if last else None
        turns.append((typed, [after or question(language, of, number + 1)]))
    async with gate:
        for sent, expected in turns:
            response = await client.post(url, json={"sender": sender, "message": sent})
            assert response.status_code == 200, response.text
            got = response.json()
            if got != expected:
                return [Mismatch(sender, sent, expected, got)]
    return []


async def play_all(gateway_url: str, plays: list[tuple[str, Script]]) -> list[Mismatch]:
    gate = asyncio.Semaphore(PARALLEL)
    url = f"{gateway_url}/channels/rest/webhook"
    limits = httpx.Limits(max_connections=PARALLEL)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        results = await asyncio.gather(*(play(client, url, s, p, gate) for s, p in plays))
    return [mismatch for found in results for mismatch in found]


def languages_of(stack: StackConfig, prefix: str) -> dict[str, str | None]:
    rows = query(
        stack.data_dir,
        "SELECT i.external_id, c.language FROM channel_identities i"
        " JOIN citizens c ON c.id = i.citizen_id WHERE i.external_id LIKE :prefix",
        prefix=f"{prefix}%",
    )
    return {str(sender): language for sender, language in rows}


def test_the_regression_set_covers_what_issue_18_asks() -> None:
    assert len(NAMES) >= 100 and len(set(NAMES)) == len(NAMES)
    for language in LANGUAGES:
        assert len(ADDRESSES[language]) >= 30 and len(DATES[language]) >= 30
    for language in LANGUAGES:
        found = [s for s in scripts() if s.language == language]
        typed = [
            (field.type, answer)
            for s in found
            for field, (answer, _shown) in zip(s.of.fields, s.answers, strict=True)
        ]
        assert {a for t, a in typed if t is FieldType.NAME} == set(NAMES)
        assert {a for t, a in typed if t is FieldType.DATE} == {d for d, _ in DATES[language]}
        assert set(ADDRESSES[language]) <= {a for t, a in typed if t is FieldType.TEXT}


def test_names_addresses_and_dates_mid_form_are_answers(stack: StackConfig) -> None:
    """Every answer gets the form's next question (or the summary), in the conversation's
    language: none cancels, falls back or switches the language, and the summary shows
    every answer as typed (dates in words)."""
    plays = [(f"e2e-answers-{n:03d}-{s.language}", s) for n, s in enumerate(scripts())]
    started = time.perf_counter()
    mismatches = asyncio.run(play_all(stack.gateway_url, plays))
    elapsed = time.perf_counter() - started
    answers = sum(len(s.answers) for _sender, s in plays)
    print(f"\nregression set: {answers} answers in {len(plays)} conversations, {elapsed:.1f} s")
    assert not mismatches, "\n".join(
        f"{m.sender}: {m.sent!r}\n  expected {m.expected}\n  got      {m.got}" for m in mismatches
    )
    expected = {sender: (None if s.language == "en" else s.language) for sender, s in plays}
    assert languages_of(stack, "e2e-answers-") == expected


# --- "Stop this application?" ------------------------------------------------------------

STOP, RESUME = "stop", "resume"


@pytest.mark.parametrize(
    ("language", "at", "request_", "answer", "outcome"),
    [
        ("en", 3, "EXIT", "1", STOP),
        ("en", 3, "exit", "Yes", STOP),  # the option's title
        ("en", 2, "I want to stop", "2", RESUME),  # typed, while a date is asked
        ("en", 2, "cancel", "no", RESUME),
        ("en", 3, "stop", "yes", STOP),
        ("en", 4, "EXIT", "yes please", STOP),  # understood by the engine
        ("fr", 3, "ANNULER", "oui", STOP),
        ("fr", 2, "je veux arrêter", "non", RESUME),
        ("fr", 4, "QUITTER", "2", RESUME),
        ("ru", 3, "ВЫХОД", "да", STOP),
        ("ru", 2, "отмена", "нет", RESUME),
        ("ru", 4, "выход", "1", STOP),
    ],
)
def test_a_stop_request_mid_form_is_confirmed(
    stack: StackConfig, language: str, at: int, request_: str, answer: str, outcome: str
) -> None:
    """Yes stops (nothing sent, the draft gone); No asks the open question again, and the
    answers given before are in the summary."""
    sender = f"e2e-stop-{language}-{at}-{request_}-{answer}"
    citizen = Citizen(stack, sender)
    born, on = DATES[language][0]
    answers = ["Anna Stopa", born, "Ottawa", "Nathalie Arrêt"]
    shown = ["Anna Stopa", localizer(language).date(on), "Ottawa", "Nathalie Arrêt"]
    if language != "en":
        assert citizen.say(language.upper()) == [language_set(language)]
    assert citizen.say(start_payload("birth_certificate"))[-1] == question(language, BIRTH, 1)
    for number in range(1, at):
        assert citizen.say(answers[number - 1]) == [question(language, BIRTH, number + 1)]

    assert citizen.say(request_) == [stop_question(language)]
    if outcome == STOP:
        assert citizen.say(answer) == [stopped(language)]
        drafts = query(
            stack.data_dir,
            "SELECT count(*) FROM application_drafts d JOIN conversations c"
            " ON c.id = d.conversation_id JOIN channel_identities i ON i.id = c.identity_id"
            " WHERE i.external_id = :sender",
            sender=sender,
        )
        assert drafts == [(0,)]
        return
    assert citizen.say(answer) == [question(language, BIRTH, at)]  # the same question
    for number in range(at, 4):
        assert citizen.say(answers[number - 1]) == [question(language, BIRTH, number + 1)]
    assert citizen.say(answers[3]) == [summary(language, BIRTH, shown)]


# --- command words ---------------------------------------------------------------------


def person_offer(language: str) -> tuple[str, list[str]]:
    """What the bot says to a request for a person with nobody online (the e2e office is
    always open): its text and its options' titles."""
    words = localizer(language)
    text = f"{words.gettext(NOBODY_NOW)} {words.gettext(OFFER_CHOICES)}"
    return text, [words.gettext(t) for t in (LEAVE_MESSAGE, CALL_ME_BACK, BACK_TO_BOT)]


@pytest.mark.parametrize(
    ("language", "word", "kind"),
    [
        ("en", "EXIT", "stop"), ("fr", "ANNULER", "stop"), ("ru", "ВЫХОД", "stop"),
        ("fr", "EXIT", "stop"), ("en", "Quit", "stop"),
        ("en", "HELP", "help"), ("fr", "AIDE", "help"), ("ru", "ПОМОЩЬ", "help"),
        ("ru", "help", "help"), ("fr", "menu", "help"),
        ("en", "PERSON", "person"), ("fr", "CONSEILLER", "person"), ("ru", "ОПЕРАТОР", "person"),
    ],
)  # fmt: skip
def test_command_words_interrupt_a_free_text_question(
    stack: StackConfig, language: str, word: str, kind: str
) -> None:
    """Typed alone while a name is asked, a command word is that command in every
    language: stop (confirmed), the menu (then the same question), or a person."""
    citizen = Citizen(stack, f"e2e-word-{language}-{word}")
    if language != "en":
        assert citizen.say(language.upper()) == [language_set(language)]
    assert citizen.say(start_payload("birth_certificate"))[-1] == question(language, BIRTH, 1)
    replies = citizen.say(word)
    if kind == "stop":
        assert replies == [stop_question(language)]
    elif kind == "help":
        assert replies == [help_menu(language), question(language, BIRTH, 1)]
        assert citizen.say("Anna Ivanova") == [question(language, BIRTH, 2)]
    else:
        [reply] = replies  # the offer, or the queue if an agent of an earlier test is online
        text, titles = person_offer(language)
        queued = localizer(language).gettext(QUEUED).split("{position}")[0]
        if not reply["text"].startswith(queued):
            assert (reply["text"], [b["title"] for b in reply["buttons"]]) == (text, titles)
        asked = query(
            stack.data_dir,
            "SELECT count(*) FROM handoffs h JOIN conversations c ON c.id = h.conversation_id"
            " JOIN channel_identities i ON i.id = c.identity_id WHERE i.external_id = :sender",
            sender=f"e2e-word-{language}-{word}",
        )
        assert asked == [(1,)]


# --- STATUS mid-form ---------------------------------------------------------------------


def test_status_typed_mid_form_answers_it_and_asks_the_question_again(
    stack: StackConfig,
) -> None:
    """``STATUS <reference>`` is never taken as the answer to a form's question: the
    applicant gets that status, anyone else is told to ask again once the application is
    done, and then the same question comes back and its answer moves the form on."""
    applicant = Citizen(stack, "e2e-status-mid-form")
    reference = apply_for_birth_certificate(applicant)
    status = applicant.say(f"STATUS {reference}")
    assert len(status) == 1 and reference in status[0]["text"]

    assert applicant.say(start_payload("birth_certificate"))[-1] == question("en", BIRTH, 1)
    assert applicant.say("Anna Stopa") == [question("en", BIRTH, 2)]
    assert applicant.say(f"status {reference.lower()}") == [*status, question("en", BIRTH, 2)]
    assert applicant.say("21/03/2019") == [question("en", BIRTH, 3)]

    stranger = Citizen(stack, "e2e-status-mid-form-stranger")
    assert stranger.say(start_payload("birth_certificate"))[-1] == question("en", BIRTH, 1)
    later = localizer("en").gettext(STATUS_AFTER_FORM).format(reference=reference)
    assert stranger.say(f"STATUS {reference}") == [{"text": later}, question("en", BIRTH, 1)]
    example = localizer("en").gettext(ONLY_AN_EXAMPLE).format(example=EXAMPLE_REFERENCE)
    copied = stranger.say(f"STATUS {EXAMPLE_REFERENCE}")  # copied from a prompt
    assert copied == [{"text": example}, question("en", BIRTH, 1)]
    assert stranger.say("Anna Stopa") == [question("en", BIRTH, 2)]
