"""The citizen's side of the handoff to a person: offered, queued, paused, handed back.

The pause is a row, not a flag in Rasa: while a conversation's handoff is claimed by an
agent (or a live chat waits in the queue), :meth:`Handoffs.intercept` keeps the
citizen's messages from Rasa, on any replica and across restarts. STOP and HELP are
answered before this (:mod:`bot.sms`). Outside office hours, or with nobody online, the
citizen may leave a message or choose a call-back slot; both wait for the next shift.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_skeleton, format_time
from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import (
    OPEN_HANDOFF,
    ApplicationDraft,
    ChannelIdentity,
    Citizen,
    Conversation,
    Direction,
    Handoff,
    HandoffKind,
    HandoffStatus,
    Message,
    StaffMember,
    StaffRole,
    as_utc,
    utcnow,
)
from bot.delivering import queue_text
from bot.i18n import N_, Localizer, localizer
from bot.languages import fold_keyword
from bot.office_hours import OfficeHours
from bot.settings import Settings
from channels.base import Button, OutgoingMessage
from channels.sms.phone import InvalidPhoneNumberError, to_e164

logger = logging.getLogger(__name__)

# Built once: every message asks it (building a statement cost more than running it).
INVOLVED = select(Handoff).where(
    Handoff.citizen_id == bindparam("citizen_id"),
    or_(
        Handoff.status.in_(OPEN_HANDOFF),
        and_(Handoff.feedback_asked_at >= bindparam("since"), Handoff.feedback_score.is_(None)),
    ),
)

# Options the gateway answers itself (never sent to Rasa); chosen by digit or title.
CHOICE_MESSAGE = "!handoff message"
CHOICE_CALLBACK = "!handoff callback"
CHOICE_BOT = "!handoff bot"
SLOT_PREFIX = "!handoff slot "
TALK_TO_HUMAN = "/talk_to_human"

PERSON_KEYWORD = N_("PERSON")  # typed alone, asks for a person in any dialogue state
ASK_PERSON_HINT = N_("To ask a person for help, reply {keyword}.")
QUEUED = N_(
    "You are number {position} in the queue for a person. A person will answer here as"
    " soon as they can; you can write meanwhile."
)
QUEUED_ESTIMATE = N_(
    "You are number {position} in the queue for a person. The wait is about {minutes}"
    " minutes. A person will answer here; you can write meanwhile."
)
STILL_QUEUED = N_("You are now number {position} in the queue. A person will answer here.")
ALREADY_WITH_PERSON = N_("A person is already looking after your conversation.")
NOBODY_NOW = N_("Sorry, nobody from our team is available right now.")
CLOSED_NOW = N_("Our team is not available right now. They are back {when}.")
OFFER_CHOICES = N_("Would you like to leave a message or be called back?")
LEAVE_MESSAGE = N_("Leave a message")
CALL_ME_BACK = N_("Call me back")
BACK_TO_BOT = N_("Continue with the assistant")
WRITE_MESSAGE = N_("Please write your message in one text. Our team will read it {when}.")
MESSAGE_TAKEN = N_("Thank you. Your message is with our team. They will answer here {when}.")
CHOOSE_SLOT = N_("When should we call you? Choose a time:")
CHOOSE_SLOT_FOR = N_("When should we call you on the number ending in {digits}? Choose a time:")
ASK_NUMBER = N_("Which phone number should we call? Please include the area code.")
BAD_NUMBER = N_("That does not look like a phone number. Please send it with the area code.")
CALLBACK_TAKEN = N_("Thank you. We will call you on the number ending in {digits} {when}.")
BACK_WITH_BOT = N_("OK, let us continue.")
SHIFT_ENDED = N_(
    "Our team has finished for today. Your request stays with them and they will answer"
    " here {when}. Meanwhile the assistant can help you."
)
EXPIRED_CHOICE = N_("That option is no longer available. Reply HELP for the menu.")
FEEDBACK_QUESTION = N_("How did our team do? Reply a number from 1 (poor) to 5 (very good).")
FEEDBACK_THANKS = N_("Thank you for your feedback.")
NEXT_OPENING_UNKNOWN = N_("as soon as possible")
SHORTLY = N_("shortly")  # "Our team will read it shortly": the moment is now
TODAY_AT = N_("today at {time}")
TOMORROW_AT = N_("tomorrow at {time}")
HANDED_BACK = N_("You are back with our automated assistant.")
RESUMING = N_("Let us continue where we stopped:")

CHOOSING_TIMEOUT = timedelta(hours=1)
SOON = timedelta(minutes=2)  # "shortly" up to this far ahead, then "in N minutes"
WITHIN_MINUTES = 60  # "in N minutes" below this many, then the clock time
ONLINE_WINDOW = timedelta(seconds=90)
FEEDBACK_WINDOW = timedelta(days=2)
NOT_ANSWERED = 0  # feedback_score when the citizen wrote something else instead


def is_person_keyword(text: str, supported: tuple[str, ...]) -> bool:
    """ "PERSON", "CONSEILLER", "ОПЕРАТОР": the keyword in any supported language."""
    if len(text) > 32:
        return False
    folded = fold_keyword(text)
    return any(
        folded == fold_keyword(localizer(code).gettext(PERSON_KEYWORD)) for code in supported
    )


def when_text(
    moment: datetime | None,
    words: Localizer,
    zone: str,
    now: datetime | None = None,
    *,
    appointment: bool = False,
) -> str:
    """When something happens, as the citizen would say it, in their language and the
    office's time zone: "shortly", "in 20 minutes", "today at 2:00 PM", "tomorrow at
    8:00 AM", else "Mon, Nov 23 8:00 AM" ("lun. 23 nov. 08:00"). An ``appointment``
    (a call-back slot) always has its clock time ("today at 2:00 PM"). Without ``now``
    the day and time are always given. Plain spaces (CLDR's narrow ones are not GSM-7)."""
    if moment is None:
        return words.gettext(NEXT_OPENING_UNKNOWN)
    local = as_utc(moment).astimezone(ZoneInfo(zone))
    hour = format_time(local, "short", locale=words.language)
    if now is not None:
        ahead = as_utc(moment) - as_utc(now)
        if ahead <= SOON and not appointment:
            return words.gettext(SHORTLY)
        minutes = math.ceil(ahead.total_seconds() / 60)
        if minutes < WITHIN_MINUTES and not appointment:
            return words.ngettext("in {count} minute", "in {count} minutes", minutes).format(
                count=minutes
            )
        days = (local.date() - as_utc(now).astimezone(ZoneInfo(zone)).date()).days
        if days in (0, 1):
            relative = words.gettext(TODAY_AT if days == 0 else TOMORROW_AT)
            return _plain(relative.format(time=hour))
    day = format_skeleton("MMMEd", local, locale=words.language)
    return _plain(f"{day} {hour}")


def _plain(text: str) -> str:
    return text.replace("\u202f", " ").replace("\u00a0", " ")


def capitalised(text: str) -> str:
    """ "Today at 11:00 AM" for a button: the phrase as it begins a line."""
    return text[:1].upper() + text[1:]


def last_digits(number: str) -> str:
    """The end of a phone number, enough for its owner to recognise it (never all of it)."""
    digits = "".join(ch for ch in number if ch.isdigit())
    return digits[-4:]


def new_handoff(
    conversation: Conversation,
    team: str,
    kind: HandoffKind,
    status: HandoffStatus,
    reason: str,
    now: datetime,
    **extra: object,
) -> Handoff:
    return Handoff(
        conversation_id=conversation.id,
        citizen_id=conversation.citizen_id,
        channel=conversation.channel,
        team=team,
        kind=kind,
        status=status,
        reason=reason,
        queued_at=now,
        **extra,
    )


async def open_handoff(session: AsyncSession, citizen_id: str) -> Handoff | None:
    """The citizen's open handoff (at most one is live at a time in practice)."""
    return await session.scalar(
        select(Handoff)
        .where(Handoff.citizen_id == citizen_id, Handoff.status.in_(OPEN_HANDOFF))
        .order_by(Handoff.queued_at.desc())
        .limit(1)
    )


async def queue_position(session: AsyncSession, handoff: Handoff) -> int:
    ahead = await session.scalar(
        select(func.count(Handoff.id)).where(
            Handoff.status == HandoffStatus.QUEUED,
            Handoff.kind == HandoffKind.CHAT,
            Handoff.team == handoff.team,
            Handoff.queued_at < handoff.queued_at,
        )
    )
    return int(ahead or 0) + 1


async def agents_online(session: AsyncSession, team: str, now: datetime) -> int:
    """Agents of ``team`` (or supervisors) with the console open in the last minute."""
    recent = await session.scalars(
        select(StaffMember).where(
            StaffMember.active.is_(True), StaffMember.last_seen_at >= now - ONLINE_WINDOW
        )
    )
    return sum(1 for s in recent if s.role == StaffRole.SUPERVISOR or team in (s.teams or []))


async def typical_handling(session: AsyncSession, team: str, now: datetime) -> timedelta | None:
    """The median time an agent spent on the team's recent chats; None without history."""
    rows = await session.execute(
        select(Handoff.claimed_at, Handoff.closed_at)
        .where(
            Handoff.team == team,
            Handoff.kind == HandoffKind.CHAT,
            Handoff.claimed_at.is_not(None),
            Handoff.closed_at >= now - timedelta(days=14),
        )
        .order_by(Handoff.closed_at.desc())
        .limit(20)
    )
    spans = [
        (as_utc(closed) - as_utc(claimed)).total_seconds()
        for claimed, closed in rows
        if claimed and closed
    ]
    return timedelta(seconds=statistics.median(spans)) if len(spans) >= 3 else None


@dataclass(frozen=True, slots=True)
class Recipient:
    """Where a message for the citizen goes: their conversation, identity, language."""

    conversation: Conversation
    identity: ChannelIdentity
    words: Localizer


class Handoffs:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.hours = OfficeHours.from_settings(settings)
        self.clock = clock  # tests fix it (office hours)

    def team_for(self, service_code: str | None) -> str:
        teams = self.settings.handoff_teams
        return teams.get(service_code or "", self.settings.handoff_default_team)

    # --- asked for a person (from Rasa's action_talk_to_human) ----------------------
    async def request(
        self,
        session: AsyncSession,
        conversation: Conversation,
        words: Localizer,
        reason: str,
        resume_message_id: int | None,
    ) -> list[OutgoingMessage]:
        now = self.clock()
        existing = await open_handoff(session, conversation.citizen_id)
        if existing is not None and existing.status == HandoffStatus.CLAIMED:
            return [OutgoingMessage(words.gettext(ALREADY_WITH_PERSON))]
        if existing is not None and existing.status == HandoffStatus.QUEUED:
            if existing.kind == HandoffKind.CHAT:
                return [await self._queued_text(session, existing, words, now)]
            existing.status, existing.outcome = HandoffStatus.CLOSED, "superseded"
            existing.closed_at = now
        if existing is not None and existing.status == HandoffStatus.CHOOSING:
            return self._offer(words, now)
        draft_service = await session.scalar(
            select(ApplicationDraft.service_code).where(
                ApplicationDraft.conversation_id == conversation.id
            )
        )
        team = self.team_for(draft_service)
        live = self.hours.is_open(now) and await agents_online(session, team, now) > 0
        handoff = new_handoff(
            conversation,
            team,
            HandoffKind.CHAT,
            HandoffStatus.QUEUED if live else HandoffStatus.CHOOSING,
            reason,
            now,
            resume_message_id=resume_message_id,
        )
        session.add(handoff)
        await session.flush()
        logger.info("conversation %s asked for a person (%s)", conversation.id, reason)
        if live:
            return [await self._queued_text(session, handoff, words, now)]
        return self._offer(words, now)

    def _offer(self, words: Localizer, now: datetime) -> list[OutgoingMessage]:
        """A message or a call back: open but nobody online, or closed until a time."""
        if self.hours.is_open(now):
            intro = words.gettext(NOBODY_NOW)
        else:
            zone = self.settings.timezone
            when = when_text(self.hours.next_opening(now), words, zone, now)
            intro = words.gettext(CLOSED_NOW).format(when=when)
        buttons = (
            Button(words.gettext(LEAVE_MESSAGE), CHOICE_MESSAGE),
            Button(words.gettext(CALL_ME_BACK), CHOICE_CALLBACK),
            Button(words.gettext(BACK_TO_BOT), CHOICE_BOT),
        )
        return [OutgoingMessage(f"{intro} {words.gettext(OFFER_CHOICES)}", buttons)]

    async def _queued_text(
        self, session: AsyncSession, handoff: Handoff, words: Localizer, now: datetime
    ) -> OutgoingMessage:
        position = await queue_position(session, handoff)
        handoff.notified_at, handoff.notified_position = now, position
        handling = await typical_handling(session, handoff.team, now)
        if handling is None:
            return OutgoingMessage(words.gettext(QUEUED).format(position=position))
        online = max(await agents_online(session, handoff.team, now), 1)
        minutes = max(1, math.ceil(math.ceil(position / online) * handling.total_seconds() / 60))
        return OutgoingMessage(
            words.gettext(QUEUED_ESTIMATE).format(position=position, minutes=minutes)
        )

    # --- every message from a citizen, before Rasa ----------------------------------
    async def intercept(
        self,
        citizen_id: str,
        text: str,
        resolved: str,
        words: Localizer,
        session: AsyncSession | None = None,
    ) -> list[OutgoingMessage] | None:
        """The gateway's answer while a person is involved (``[]``: stay silent), or
        ``None`` when the bot should answer as usual. Runs in ``session`` if given, and
        commits it."""
        if session is None:
            async with self.sessions() as own:
                return await self.intercept(citizen_id, text, resolved, words, own)
        handoff, asked = await self._involved(session, citizen_id)
        if handoff is None:
            replies = await self._feedback(session, asked, text, words)
            if replies is None and resolved.startswith("!handoff"):
                replies = [OutgoingMessage(words.gettext(EXPIRED_CHOICE))]
        elif handoff.status == HandoffStatus.CHOOSING:
            replies = await self._choosing(session, handoff, text, resolved, words)
        elif handoff.status == HandoffStatus.CLAIMED:
            replies = []  # the agent reads it in the console
        elif handoff.kind == HandoffKind.CHAT:
            replies = await self._waiting(session, handoff, words)
        else:
            replies = None  # a message or call-back waits for the next shift
        await session.commit()
        return replies

    async def _involved(
        self, session: AsyncSession, citizen_id: str
    ) -> tuple[Handoff | None, Handoff | None]:
        """The citizen's open handoff and the latest one awaiting its rating, in one query
        (every message asks; nearly always neither exists)."""
        since = self.clock() - FEEDBACK_WINDOW
        rows = await session.scalars(INVOLVED, {"citizen_id": citizen_id, "since": since})
        found = list(rows)
        open_ones = [h for h in found if h.status in OPEN_HANDOFF]
        asked = [
            h
            for h in found
            if h.feedback_asked_at is not None
            and as_utc(h.feedback_asked_at) >= since
            and h.feedback_score is None
        ]
        handoff = max(open_ones, key=lambda h: as_utc(h.queued_at), default=None)
        latest = max(asked, key=lambda h: as_utc(h.feedback_asked_at or h.queued_at), default=None)
        return handoff, latest

    async def _waiting(
        self, session: AsyncSession, handoff: Handoff, words: Localizer
    ) -> list[OutgoingMessage]:
        """In the queue: a position update at most once per interval (SMS costs money)."""
        now = self.clock()
        interval = timedelta(seconds=self.settings.handoff_update_interval_seconds)
        if handoff.notified_at is not None and as_utc(handoff.notified_at) > now - interval:
            return []
        return [await self._queued_text(session, handoff, words, now)]

    async def _choosing(
        self, session: AsyncSession, handoff: Handoff, text: str, resolved: str, words: Localizer
    ) -> list[OutgoingMessage] | None:
        now = self.clock()
        opening = when_text(self.hours.next_opening(now), words, self.settings.timezone, now)
        if handoff.kind == HandoffKind.MESSAGE:  # this text is the message
            self._queue(handoff, now)
            return [OutgoingMessage(words.gettext(MESSAGE_TAKEN).format(when=opening))]
        if handoff.kind == HandoffKind.CALLBACK and handoff.callback_at is not None:
            return await self._take_number(session, handoff, text, words, now)
        if handoff.kind == HandoffKind.CALLBACK:
            slot = self._offered_slot(resolved, now)
            if slot is not None:
                handoff.callback_at = slot
                number = await self._known_number(session, handoff)
                if number is None:
                    return [OutgoingMessage(words.gettext(ASK_NUMBER))]
                handoff.callback_number = number
                self._queue(handoff, now)
                return [self._callback_taken(handoff, words, now)]
            if resolved != CHOICE_BOT:
                return [await self._slots(session, handoff, words, now)]
        if resolved == CHOICE_MESSAGE:
            handoff.kind = HandoffKind.MESSAGE
            return [OutgoingMessage(words.gettext(WRITE_MESSAGE).format(when=opening))]
        if resolved == CHOICE_CALLBACK:
            handoff.kind = HandoffKind.CALLBACK
            return [await self._slots(session, handoff, words, now)]
        handoff.status, handoff.outcome, handoff.closed_at = HandoffStatus.CLOSED, "declined", now
        if resolved != CHOICE_BOT:
            return None  # something else entirely: the bot answers it
        return [
            OutgoingMessage(words.gettext(BACK_WITH_BOT)),
            *await self._resume(session, handoff),
        ]

    def _offered_slot(self, resolved: str, now: datetime) -> datetime | None:
        """The call-back time chosen, in UTC, if it is one we could have offered: in the
        future and within office hours (a typed look-alike is not trusted)."""
        if not resolved.startswith(SLOT_PREFIX):
            return None
        try:
            chosen = datetime.fromisoformat(resolved.removeprefix(SLOT_PREFIX))
        except ValueError:
            return None
        if chosen.tzinfo is None or chosen <= now or not self.hours.is_open(chosen):
            return None
        return chosen.astimezone(UTC)

    def _queue(self, handoff: Handoff, now: datetime) -> None:
        handoff.status, handoff.queued_at = HandoffStatus.QUEUED, now

    async def _slots(
        self, session: AsyncSession, handoff: Handoff, words: Localizer, now: datetime
    ) -> OutgoingMessage:
        """The call-back times, saying which number will be called when it is known."""
        slots = self.hours.callback_slots(now, count=self.settings.handoff_callback_slots)
        zone = self.settings.timezone
        buttons = [
            Button(
                capitalised(when_text(start, words, zone, now, appointment=True)),
                SLOT_PREFIX + start.isoformat(),
            )
            for start, _end in slots
        ]
        buttons.append(Button(words.gettext(BACK_TO_BOT), CHOICE_BOT))
        number = await self._known_number(session, handoff)
        if number is None:  # asked once a time is chosen
            return OutgoingMessage(words.gettext(CHOOSE_SLOT), tuple(buttons))
        question = words.gettext(CHOOSE_SLOT_FOR).format(digits=last_digits(number))
        return OutgoingMessage(question, tuple(buttons))

    def _callback_taken(self, handoff: Handoff, words: Localizer, now: datetime) -> OutgoingMessage:
        when = when_text(handoff.callback_at, words, self.settings.timezone, now, appointment=True)
        digits = last_digits(handoff.callback_number or "")
        return OutgoingMessage(words.gettext(CALLBACK_TAKEN).format(digits=digits, when=when))

    async def _known_number(self, session: AsyncSession, handoff: Handoff) -> str | None:
        """The citizen's SMS number: the one they write from, or one linked to them."""
        return await session.scalar(
            select(ChannelIdentity.external_id)
            .where(
                ChannelIdentity.citizen_id == handoff.citizen_id, ChannelIdentity.channel == "sms"
            )
            .order_by(ChannelIdentity.last_seen_at.desc())
            .limit(1)
        )

    async def _take_number(
        self, session: AsyncSession, handoff: Handoff, text: str, words: Localizer, now: datetime
    ) -> list[OutgoingMessage]:
        try:
            handoff.callback_number = to_e164(text, self.settings.default_phone_region)
        except InvalidPhoneNumberError:
            return [OutgoingMessage(words.gettext(BAD_NUMBER))]
        self._queue(handoff, now)
        return [self._callback_taken(handoff, words, now)]

    async def _feedback(
        self, session: AsyncSession, asked: Handoff | None, text: str, words: Localizer
    ) -> list[OutgoingMessage] | None:
        """The answer to "how did our team do?", asked once after a handoff ends."""
        if asked is None:
            return None
        answer = text.strip().rstrip(".")
        if answer not in {"1", "2", "3", "4", "5"}:
            asked.feedback_score = NOT_ANSWERED
            return None
        asked.feedback_score = int(answer)
        logger.info("handoff %s rated %s", asked.id, answer)
        resumed = await self._resume(session, asked) if asked.outcome == "handed_back" else []
        return [OutgoingMessage(words.gettext(FEEDBACK_THANKS)), *resumed]

    async def handed_back(
        self,
        session: AsyncSession,
        handoff: Handoff,
        words: Localizer,
        form_open: bool | None = None,
    ) -> OutgoingMessage:
        """What the citizen is told when an agent hands the conversation back (the
        caller sends it and ends the handoff).

        With a question of the bot pending (a form was open when they asked for a
        person, and Rasa still has it open: ``form_open``, None when Rasa could not
        say), the message says the assistant is back and asks that question again,
        once, with its options, and nothing else: a rating asked in the same breath
        would take the next answer (both are answered with a digit or a word). The
        refused answers to that question count afresh. With nothing pending, the one
        question is the rating (1–5)."""
        back = words.gettext(HANDED_BACK)
        resumed = [] if form_open is False else await self._resume(session, handoff)
        if not resumed:
            handoff.resume_message_id = None  # nothing to come back to after the rating
            handoff.feedback_asked_at = self.clock()
            return OutgoingMessage(f"{back} {words.gettext(FEEDBACK_QUESTION)}")
        await session.execute(
            update(ApplicationDraft)
            .where(ApplicationDraft.conversation_id == handoff.conversation_id)
            .values(failed_attempts=0)
        )
        question = resumed[0]
        return OutgoingMessage(
            f"{back} {words.gettext(RESUMING)}\n{question.text}", question.buttons
        )

    async def _resume(self, session: AsyncSession, handoff: Handoff) -> list[OutgoingMessage]:
        """The bot's open question from before the handoff (the form is still waiting)."""
        if handoff.resume_message_id is None:
            return []
        question = await session.get(Message, handoff.resume_message_id)
        if question is None:
            return []
        buttons = tuple(Button(b["title"], b["payload"]) for b in question.buttons or [])
        return [OutgoingMessage(question.text, buttons)]

    # --- background rounds (every replica; compare-and-set keeps them single) --------
    async def run_due(self) -> int:
        """Abandon stale choices, end live waits when the shift ends, update positions."""
        now = self.clock()
        done = 0
        stale = and_(
            Handoff.status == HandoffStatus.CHOOSING, Handoff.updated_at < now - CHOOSING_TIMEOUT
        )
        async with self.sessions() as session:
            # Look before writing: a round with nothing to abandon opens no write
            # transaction (every replica runs this every second).
            if await session.scalar(select(Handoff.id).where(stale).limit(1)) is not None:
                abandoned = await session.execute(
                    update(Handoff)
                    .where(stale)
                    .values(status=HandoffStatus.CLOSED, outcome="abandoned", closed_at=now)
                )
                done += int(getattr(abandoned, "rowcount", 0) or 0)
            waiting = list(
                await session.scalars(
                    select(Handoff).where(
                        Handoff.status == HandoffStatus.QUEUED, Handoff.kind == HandoffKind.CHAT
                    )
                )
            )
            await session.commit()
        open_now = self.hours.is_open(now)
        for handoff in waiting:
            done += await self._update_one(handoff.id, now, open_now)
        return done

    async def _update_one(self, handoff_id: str, now: datetime, open_now: bool) -> int:
        interval = timedelta(seconds=self.settings.handoff_update_interval_seconds)
        async with self.sessions() as session:
            handoff = await session.get(Handoff, handoff_id)
            if handoff is None or handoff.status != HandoffStatus.QUEUED:
                return 0
            position = await queue_position(session, handoff)
            if open_now and not (
                handoff.notified_position is not None
                and position < handoff.notified_position
                and (handoff.notified_at is None or as_utc(handoff.notified_at) <= now - interval)
            ):
                return 0
            # Compare-and-set: of two replicas, only the one that moves notified_at sends.
            previous = handoff.notified_at
            claimed = await session.execute(
                update(Handoff)
                .where(
                    Handoff.id == handoff.id,
                    Handoff.notified_at == previous
                    if previous is not None
                    else Handoff.notified_at.is_(None),
                )
                .values(notified_at=now, notified_position=position)
            )
            if not getattr(claimed, "rowcount", 0):
                return 0
            target = await self.recipient(session, handoff)
            if target is None:
                await session.commit()
                return 0
            if open_now:
                text = target.words.gettext(STILL_QUEUED).format(position=position)
            else:  # the shift ended: the request waits, the bot answers meanwhile
                await session.execute(
                    update(Handoff).where(Handoff.id == handoff.id).values(kind=HandoffKind.MESSAGE)
                )
                opening = self.hours.next_opening(now)
                when = when_text(opening, target.words, self.settings.timezone, now)
                text = target.words.gettext(SHIFT_ENDED).format(when=when)
            await self.tell(session, target, text)
            await session.commit()
        return 1

    async def recipient(self, session: AsyncSession, handoff: Handoff) -> Recipient | None:
        """The device the citizen last wrote from (linked devices share one dialogue),
        else the one the handoff started on."""
        latest = await session.scalar(
            select(Message.conversation_id)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(
                Conversation.citizen_id == handoff.citizen_id,
                Message.direction == Direction.INBOUND,
            )
            .order_by(Message.id.desc())
            .limit(1)
        )
        conversation = await session.get(Conversation, latest or handoff.conversation_id)
        if conversation is None:
            return None
        identity = await session.get(ChannelIdentity, conversation.identity_id)
        citizen = await session.get(Citizen, conversation.citizen_id)
        if identity is None or citizen is None:
            return None
        words = localizer(citizen.language, self.settings.default_language)
        return Recipient(conversation, identity, words)

    async def tell(
        self,
        session: AsyncSession,
        target: Recipient,
        text: str,
        buttons: tuple[Button, ...] = (),
        staff_id: str | None = None,
    ) -> None:
        await queue_text(
            session,
            target.conversation,
            target.identity,
            text,
            target.words,
            self.settings.sms_segment_budget,
            buttons=buttons,
            staff_id=staff_id,
        )
