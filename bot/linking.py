"""One citizen across devices: one-time link codes, a shared phone number, unlinking.

``LINK`` on one device gives a short code; ``LINK <code>`` from another joins the two
identities to one citizen, and the second device then speaks in the first one's dialogue,
so an open form continues where it stopped. A phone number shared through Telegram's own
contact button (only the user's own) links the chat to that number's SMS identity.
Codes are stored hashed, expire after 15 minutes, are single use, and guessing is limited
per identity.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import (
    Application,
    ChannelIdentity,
    Citizen,
    Conversation,
    Direction,
    LinkAttempt,
    LinkCode,
    Message,
    utcnow,
)
from bot.privacy import mask

logger = logging.getLogger(__name__)

CODE_VALID_FOR = timedelta(minutes=15)
ATTEMPT_WINDOW = timedelta(hours=1)
MAX_FAILED_ATTEMPTS = 5
CODE_DIGITS = 6
_COMMAND = re.compile(r"^\s*(?P<verb>un)?link\b[\s:#-]*(?P<code>[\d\s-]*)$", re.IGNORECASE)


class Command(enum.Enum):
    ISSUE = "issue"
    REDEEM = "redeem"
    UNLINK = "unlink"


@dataclass(frozen=True, slots=True)
class DeviceCommand:
    command: Command
    code: str = ""


def device_command(text: str) -> DeviceCommand | None:
    """``LINK``, ``LINK 123 456`` or ``UNLINK``, in any case; anything else is None."""
    found = _COMMAND.match(text)
    if found is None:
        return None
    code = re.sub(r"\D", "", found["code"])
    if found["verb"]:
        return DeviceCommand(Command.UNLINK) if not code else None
    return DeviceCommand(Command.REDEEM, code) if code else DeviceCommand(Command.ISSUE)


class Redeemed(enum.Enum):
    LINKED = "linked"
    SAME_CITIZEN = "same"  # both devices already belong to this citizen
    INVALID = "invalid"  # unknown, expired or used
    LOCKED = "locked"  # too many wrong codes from this identity lately


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


async def issue_code(session: AsyncSession, conversation: Conversation) -> str:
    """A fresh code for this conversation's citizen and dialogue (older ones void)."""
    now = utcnow()
    await session.execute(
        delete(LinkCode).where(
            or_(
                LinkCode.expires_at < now,
                LinkCode.used_at.is_not(None),
                LinkCode.conversation_id == conversation.id,
            )
        )
    )
    while True:
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        taken = await session.scalar(select(LinkCode.id).where(LinkCode.code_hash == _hash(code)))
        if taken is None:
            break
    session.add(
        LinkCode(
            code_hash=_hash(code),
            citizen_id=conversation.citizen_id,
            conversation_id=conversation.id,
            expires_at=now + CODE_VALID_FOR,
        )
    )
    return code


async def redeem_code(
    session: AsyncSession, conversation: Conversation, code: str
) -> tuple[Redeemed, LinkCode | None]:
    """Join ``conversation``'s identity to the citizen and dialogue that issued ``code``."""
    now = utcnow()
    failures = await session.scalar(
        select(func.count(LinkAttempt.id)).where(
            LinkAttempt.identity_id == conversation.identity_id,
            LinkAttempt.succeeded.is_(False),
            LinkAttempt.created_at >= now - ATTEMPT_WINDOW,
        )
    )
    if int(failures or 0) >= MAX_FAILED_ATTEMPTS:
        return Redeemed.LOCKED, None
    link = await session.scalar(
        select(LinkCode).where(
            LinkCode.code_hash == _hash(code), LinkCode.used_at.is_(None), LinkCode.expires_at > now
        )
    )
    session.add(LinkAttempt(identity_id=conversation.identity_id, succeeded=link is not None))
    if link is None:
        logger.warning("wrong link code from identity %s", mask(conversation.identity_id))
        return Redeemed.INVALID, None
    link.used_at, link.used_by = now, conversation.identity_id
    if link.conversation_id == conversation.id:
        return Redeemed.SAME_CITIZEN, link
    issuer = await session.get(Conversation, link.conversation_id)
    assert issuer is not None
    same = issuer.citizen_id == conversation.citizen_id
    await merge_citizens(session, keep=link.citizen_id, absorb=conversation.citizen_id)
    conversation.citizen_id = link.citizen_id
    conversation.dialogue_id = issuer.rasa_sender
    return (Redeemed.SAME_CITIZEN if same else Redeemed.LINKED), link


async def merge_citizens(session: AsyncSession, keep: str, absorb: str) -> None:
    """Everything of citizen ``absorb`` (identities, conversations, applications) now
    belongs to ``keep``; ``absorb`` is deleted."""
    if keep == absorb:
        return
    for model in (ChannelIdentity, Conversation, Application, LinkCode):
        await session.execute(
            update(model).where(model.citizen_id == absorb).values(citizen_id=keep)
        )
    kept, absorbed = await session.get(Citizen, keep), await session.get(Citizen, absorb)
    if kept is not None and absorbed is not None:
        kept.language = kept.language or absorbed.language
        await session.delete(absorbed)
    logger.info("citizen %s linked into %s", absorb, keep)


async def link_phone(session: AsyncSession, conversation: Conversation, phone: str) -> bool:
    """Link the citizen to the SMS identity of ``phone`` (already E.164, proven theirs by
    the provider); True if this joined two citizens or created the SMS identity."""
    identity = await session.scalar(
        select(ChannelIdentity).where(
            ChannelIdentity.channel == "sms", ChannelIdentity.external_id == phone
        )
    )
    if identity is None:
        session.add(
            ChannelIdentity(citizen_id=conversation.citizen_id, channel="sms", external_id=phone)
        )
        return True
    if identity.citizen_id == conversation.citizen_id:
        return False
    keep = identity.citizen_id  # the number's citizen has the SMS history
    await merge_citizens(session, keep=keep, absorb=conversation.citizen_id)
    conversation.citizen_id = keep
    return True


async def unlink(session: AsyncSession, conversation: Conversation) -> bool:
    """Detach this device: a citizen of its own, its own dialogue, the applications it
    filed itself. False if it was not linked to anything."""
    others = await session.scalar(
        select(func.count(ChannelIdentity.id)).where(
            ChannelIdentity.citizen_id == conversation.citizen_id,
            ChannelIdentity.id != conversation.identity_id,
        )
    )
    if not others and conversation.dialogue_id is None:
        return False
    old = await session.get(Citizen, conversation.citizen_id)
    citizen = Citizen(language=old.language if old else None)
    session.add(citizen)
    await session.flush()
    await session.execute(
        update(ChannelIdentity)
        .where(ChannelIdentity.id == conversation.identity_id)
        .values(citizen_id=citizen.id)
    )
    await session.execute(
        update(Application)
        .where(Application.identity_id == conversation.identity_id)
        .values(citizen_id=citizen.id)
    )
    conversation.citizen_id, conversation.dialogue_id = citizen.id, None
    return True


async def last_question(session: AsyncSession, link: LinkCode) -> Message | None:
    """What the bot last said on the issuing device before the code: the open question
    to repeat on the new device."""
    return await session.scalar(
        select(Message)
        .where(
            Message.conversation_id == link.conversation_id,
            Message.direction == Direction.OUTBOUND,
            Message.created_at < link.created_at,
        )
        .order_by(Message.id.desc())
        .limit(1)
    )
