"""When the call centre will act, as the citizen reads it: "shortly", "in 20 minutes",
"today at 2:00 PM", "tomorrow at 8:00 AM", else the date; and which number a call-back
goes to (its last four digits only). Exact strings in English, French and Russian, with
the clock of :class:`bot.handoff.Handoffs` fixed (office hours: weekdays 08:00–18:00 in
Toronto)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.conversation import choose_option
from bot.db.models import (
    ChannelIdentity,
    Citizen,
    Conversation,
    Delivery,
    Handoff,
    HandoffKind,
    HandoffStatus,
)
from bot.handoff import Handoffs, last_digits, new_handoff, when_text
from bot.i18n import localizer
from bot.settings import Settings
from channels.base import OutgoingMessage
from support.stack import gateway_settings

TORONTO = ZoneInfo("America/Toronto")
ZONE = "America/Toronto"
SMS_NUMBER = "+15145550123"


def toronto(day: int, hour: int, minute: int = 0) -> datetime:
    """A wall time in Toronto in the week of Monday 12 January 2026, as a UTC instant."""
    return datetime(2026, 1, day, hour, minute, tzinfo=TORONTO).astimezone(UTC)


MONDAY_10 = toronto(12, 10)


# --- the phrase alone ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ahead", "en", "fr", "ru"),
    [
        (timedelta(0), "shortly", "sous peu", "в ближайшее время"),
        (timedelta(seconds=-30), "shortly", "sous peu", "в ближайшее время"),
        (timedelta(minutes=2), "shortly", "sous peu", "в ближайшее время"),
        (timedelta(minutes=3), "in 3 minutes", "dans 3 minutes", "через 3 минуты"),
        (timedelta(minutes=21), "in 21 minutes", "dans 21 minutes", "через 21 минуту"),
        (timedelta(minutes=45), "in 45 minutes", "dans 45 minutes", "через 45 минут"),
        (timedelta(minutes=60), "today at 11:00 AM", "aujourd'hui à 11:00",
         "сегодня в 11:00"),
        (timedelta(hours=4), "today at 2:00 PM", "aujourd'hui à 14:00", "сегодня в 14:00"),
        (timedelta(hours=22), "tomorrow at 8:00 AM", "demain à 08:00", "завтра в 08:00"),
        (timedelta(days=2), "Wed, Jan 14 10:00 AM", "mer. 14 janv. 10:00", "ср, 14 янв. 10:00"),
    ],
)  # fmt: skip
def test_when_reads_relative_to_now(ahead: timedelta, en: str, fr: str, ru: str) -> None:
    for language, expected in (("en", en), ("fr", fr), ("ru", ru)):
        assert when_text(MONDAY_10 + ahead, localizer(language), ZONE, MONDAY_10) == expected


def test_a_minute_is_singular_in_english_and_russian_plurals_have_three_forms() -> None:
    for minutes, en, fr, ru in [
        (3, "in 3 minutes", "dans 3 minutes", "через 3 минуты"),
        (5, "in 5 minutes", "dans 5 minutes", "через 5 минут"),
        (11, "in 11 minutes", "dans 11 minutes", "через 11 минут"),
        (31, "in 31 minutes", "dans 31 minutes", "через 31 минуту"),
    ]:
        moment = MONDAY_10 + timedelta(minutes=minutes)
        got = [when_text(moment, localizer(code), ZONE, MONDAY_10) for code in ("en", "fr", "ru")]
        assert got == [en, fr, ru]


def test_tomorrow_is_the_next_day_in_the_office_s_time_zone_not_in_utc() -> None:
    late = toronto(12, 21)  # 02:00 UTC on Tuesday already
    assert when_text(toronto(13, 8), localizer("en"), ZONE, late) == "tomorrow at 8:00 AM"
    assert when_text(toronto(12, 23), localizer("en"), ZONE, late) == "today at 11:00 PM"


def test_without_now_the_day_and_time_are_given_and_no_moment_is_as_soon_as_possible() -> None:
    assert when_text(MONDAY_10, localizer("en"), ZONE) == "Mon, Jan 12 10:00 AM"
    assert when_text(None, localizer("fr"), ZONE, MONDAY_10) == "dès que possible"


def test_only_the_last_four_digits_of_a_number_are_told() -> None:
    assert last_digits("+15145550123") == "0123"
    assert last_digits("(514) 555-0199") == "0199"


# --- every handoff message ----------------------------------------------------------------


def office(directory: Path) -> Settings:
    return gateway_settings(
        directory, "http://127.0.0.1:9", office_hours="mon-fri 08:00-18:00", timezone=ZONE
    )


class Caller:
    """One citizen around :meth:`Handoffs.intercept`, in ``language`` on ``channel``; a
    digit answers the last options offered (as ConversationService resolves it)."""

    def __init__(self, handoffs: Handoffs, conversation: Conversation, language: str) -> None:
        self.handoffs, self.conversation = handoffs, conversation
        self.words = localizer(language)
        self.options: list[dict[str, str]] = []

    async def ask_for_a_person(self) -> OutgoingMessage:
        async with self.handoffs.sessions() as session:
            conversation = await session.get(Conversation, self.conversation.id)
            assert conversation is not None
            (reply,) = await self.handoffs.request(session, conversation, self.words, "asked", None)
            await session.commit()
        self._remember(reply)
        return reply

    async def say(self, text: str) -> OutgoingMessage:
        resolved = choose_option(text, self.options) or text
        replies = await self.handoffs.intercept(
            self.conversation.citizen_id, text, resolved, self.words
        )
        assert replies is not None and len(replies) == 1, replies
        self._remember(replies[0])
        return replies[0]

    def _remember(self, reply: OutgoingMessage) -> None:
        self.options = [{"title": b.title, "payload": b.payload} for b in reply.buttons]


async def citizen(
    sessions: async_sessionmaker[AsyncSession],
    directory: Path,
    now: datetime,
    language: str,
    channel: str = "sms",
) -> Caller:
    async with sessions() as session:
        person = Citizen(language=language)
        session.add(person)
        await session.flush()
        sender = SMS_NUMBER if channel == "sms" else "web-session-1"
        identity = ChannelIdentity(citizen_id=person.id, channel=channel, external_id=sender)
        session.add(identity)
        await session.flush()
        conversation = Conversation(identity_id=identity.id, citizen_id=person.id, channel=channel)
        session.add(conversation)
        await session.commit()
    return Caller(Handoffs(office(directory), sessions, clock=lambda: now), conversation, language)


OFFER_END = {
    "en": "Would you like to leave a message or be called back?",
    "fr": "Voulez-vous nous laisser un message ou que nous vous rappelions?",
    "ru": "Хотите оставить сообщение или заказать обратный звонок?",
}
CLOSED = {
    "en": "Our team is not available right now. They are back {when}.",
    "fr": "Notre équipe n'est pas disponible pour le moment. Elle sera de retour {when}.",
    "ru": "Сейчас сотрудники недоступны. Снова на связи {when}.",
}


@pytest.mark.parametrize(
    ("now", "language", "when"),
    [
        (toronto(12, 7, 59), "en", "shortly"),
        (toronto(12, 7, 30), "en", "in 30 minutes"),
        (toronto(12, 7, 30), "fr", "dans 30 minutes"),
        (toronto(12, 7, 30), "ru", "через 30 минут"),
        (toronto(12, 5), "en", "today at 8:00 AM"),
        (toronto(12, 5), "ru", "сегодня в 08:00"),
        (toronto(12, 19), "en", "tomorrow at 8:00 AM"),
        (toronto(12, 19), "fr", "demain à 08:00"),
        (toronto(12, 19), "ru", "завтра в 08:00"),
        (toronto(16, 19), "en", "Mon, Jan 19 8:00 AM"),  # Friday evening: Monday
        (toronto(16, 19), "fr", "lun. 19 janv. 08:00"),
        (toronto(16, 19), "ru", "пн, 19 янв. 08:00"),
    ],
)
async def test_closed_says_when_the_team_is_back(
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    now: datetime,
    language: str,
    when: str,
) -> None:
    person = await citizen(sessions, tmp_path, now, language)
    offer = await person.ask_for_a_person()
    assert offer.text == f"{CLOSED[language].format(when=when)} {OFFER_END[language]}"


MESSAGE_TEXTS = {
    "en": (
        "Please write your message in one text. Our team will read it {when}.",
        "Thank you. Your message is with our team. They will answer here {when}.",
    ),
    "fr": (
        "Écrivez tout votre message en un seul envoi. Notre équipe le lira {when}.",
        "Merci. Votre message a été transmis à notre équipe. Elle vous répondra ici {when}.",
    ),
    "ru": (
        "Напишите всё одним сообщением. Сотрудники прочитают его {when}.",
        "Спасибо. Сообщение передано сотрудникам. Ответ придёт сюда {when}.",
    ),
}


@pytest.mark.parametrize(
    ("now", "language", "when"),
    [
        (MONDAY_10, "en", "shortly"),  # open, nobody online: not "Mon, Jan 12 10:00 AM"
        (MONDAY_10, "fr", "sous peu"),
        (MONDAY_10, "ru", "в ближайшее время"),
        (toronto(12, 19), "en", "tomorrow at 8:00 AM"),
        (toronto(12, 19), "fr", "demain à 08:00"),
        (toronto(12, 19), "ru", "завтра в 08:00"),
    ],
)
async def test_a_message_for_the_team_says_when_it_is_read(
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    now: datetime,
    language: str,
    when: str,
) -> None:
    person = await citizen(sessions, tmp_path, now, language)
    await person.ask_for_a_person()
    prompt, taken = MESSAGE_TEXTS[language]
    assert (await person.say("1")).text == prompt.format(when=when)
    assert (await person.say("My bin was not collected.")).text == taken.format(when=when)


SLOT_QUESTION = {
    "en": "When should we call you on the number ending in 0123? Choose a time:",
    "fr": "Quand pouvons-nous vous appeler au numéro se terminant par 0123?"
    " Choisissez un créneau :",
    "ru": "Когда вам позвонить на номер, оканчивающийся на 0123? Выберите время:",
}
CALLBACK_TAKEN = {
    "en": "Thank you. We will call you on the number ending in {digits} {when}.",
    "fr": "Merci. Nous vous appellerons au numéro se terminant par {digits} {when}.",
    "ru": "Спасибо. Мы позвоним вам на номер, оканчивающийся на {digits}, {when}.",
}
BACK_TO_BOT = {
    "en": "Continue with the assistant",
    "fr": "Continuer avec l'assistant",
    "ru": "Продолжить с ботом",
}


@pytest.mark.parametrize(
    ("now", "language", "slots", "taken"),
    [
        (
            MONDAY_10, "en",
            ["Today at 11:00 AM", "Today at 12:00 PM", "Today at 1:00 PM", "Today at 2:00 PM"],
            "today at 11:00 AM",
        ),
        (
            MONDAY_10, "fr",
            ["Aujourd'hui à 11:00", "Aujourd'hui à 12:00", "Aujourd'hui à 13:00",
             "Aujourd'hui à 14:00"],
            "aujourd'hui à 11:00",
        ),
        (
            MONDAY_10, "ru",
            ["Сегодня в 11:00", "Сегодня в 12:00", "Сегодня в 13:00", "Сегодня в 14:00"],
            "сегодня в 11:00",
        ),
        (
            toronto(12, 16, 10), "en",
            ["Today at 5:00 PM", "Tomorrow at 8:00 AM", "Tomorrow at 9:00 AM",
             "Tomorrow at 10:00 AM"],
            "today at 5:00 PM",
        ),
        (
            toronto(16, 17), "en",  # Friday after the last slot: Monday's
            ["Mon, Jan 19 8:00 AM", "Mon, Jan 19 9:00 AM", "Mon, Jan 19 10:00 AM",
             "Mon, Jan 19 11:00 AM"],
            "Mon, Jan 19 8:00 AM",
        ),
        (
            toronto(16, 17), "ru",
            ["Пн, 19 янв. 08:00", "Пн, 19 янв. 09:00", "Пн, 19 янв. 10:00", "Пн, 19 янв. 11:00"],
            "пн, 19 янв. 08:00",
        ),
    ],
)  # fmt: skip
async def test_call_back_slots_and_the_confirmation_say_when_and_which_number(
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    now: datetime,
    language: str,
    slots: list[str],
    taken: str,
) -> None:
    person = await citizen(sessions, tmp_path, now, language)
    await person.ask_for_a_person()
    question = await person.say("2")  # "Call me back"
    assert question.text == SLOT_QUESTION[language]
    assert [b.title for b in question.buttons] == [*slots, BACK_TO_BOT[language]]
    confirmed = await person.say("1")
    assert confirmed.text == CALLBACK_TAKEN[language].format(digits="0123", when=taken)
    assert "5145550123" not in confirmed.text and "514555" not in question.text


async def test_a_number_given_for_the_call_back_is_confirmed_by_its_last_digits(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    person = await citizen(sessions, tmp_path, MONDAY_10, "fr", channel="webchat")
    await person.ask_for_a_person()
    question = await person.say("2")
    assert question.text == "Quand pouvons-nous vous appeler? Choisissez un créneau :"  # no number
    asked = await person.say("1")
    assert asked.text == ("Quel numéro devons-nous appeler? Indiquez aussi l'indicatif régional.")
    confirmed = await person.say("514 555 0199")
    assert confirmed.text == CALLBACK_TAKEN["fr"].format(digits="0199", when="aujourd'hui à 11:00")


SHIFT_ENDED = {
    "en": "Our team has finished for today. Your request stays with them and they will answer"
    " here tomorrow at 8:00 AM. Meanwhile the assistant can help you.",
    "fr": "Notre équipe a terminé pour aujourd'hui. Elle garde votre demande et vous répondra"
    " ici demain à 08:00. En attendant, l'assistant peut vous aider.",
    "ru": "Сотрудники закончили работу на сегодня. Обращение сохранено, ответ придёт сюда"
    " завтра в 08:00. А пока вам может помочь бот.",
}


@pytest.mark.parametrize("language", ["en", "fr", "ru"])
async def test_a_live_wait_at_the_end_of_the_shift_says_when_the_team_answers(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, language: str
) -> None:
    evening = toronto(12, 18, 5)
    person = await citizen(sessions, tmp_path, evening, language)
    async with sessions() as session:
        conversation = await session.get(Conversation, person.conversation.id)
        assert conversation is not None
        waiting_since = evening - timedelta(minutes=20)
        session.add(
            new_handoff(
                conversation, "general", HandoffKind.CHAT, HandoffStatus.QUEUED, "asked",
                waiting_since,
            )
        )  # fmt: skip
        await session.commit()
    assert await person.handoffs.run_due() == 1
    async with sessions() as session:
        (body,) = (await session.scalars(select(Delivery.body))).all()
        handoff = (await session.scalars(select(Handoff))).one()
    assert body == SHIFT_ENDED[language]
    assert handoff.kind == HandoffKind.MESSAGE
