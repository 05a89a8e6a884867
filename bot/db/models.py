"""Gateway tables. Conversation state lives here (and in Rasa's tracker store), never in
process memory, so that several gateway replicas can serve the same citizens."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    CursorResult,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Result
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """A stored time as aware UTC (SQLite hands DateTime(timezone=True) back naive)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: DateTime(timezone=True),
    }


class Direction(enum.StrEnum):
    INBOUND = "in"
    OUTBOUND = "out"


class Citizen(Base):
    """A person, possibly reachable through several channel identities."""

    __tablename__ = "citizens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    language: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    identities: Mapped[list[ChannelIdentity]] = relationship(back_populates="citizen")


class ChannelIdentity(Base):
    """A citizen's address on one channel: a phone number, a Telegram chat, a web session."""

    __tablename__ = "channel_identities"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    citizen_id: Mapped[str] = mapped_column(ForeignKey("citizens.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set by STOP (or a provider's "unsubscribed" error): nothing more is sent until START.
    opted_out_at: Mapped[datetime | None] = mapped_column()
    # Set when the provider says the citizen cannot be reached (a Telegram user who blocked
    # the bot); cleared when they write again. Nothing is sent meanwhile.
    unreachable_at: Mapped[datetime | None] = mapped_column()

    citizen: Mapped[Citizen] = relationship(back_populates="identities")


class ConsentChange(Base):
    """An opt-out or opt-in, with when and on which channel: the compliance record."""

    __tablename__ = "consent_changes"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    identity_id: Mapped[str] = mapped_column(ForeignKey("channel_identities.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    opted_in: Mapped[bool] = mapped_column()
    # What caused it: the keyword as received, or the provider's error code.
    trigger: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Conversation(Base):
    """One identity's dialogue. Its id is the ``sender_id`` Rasa sees: no phone numbers
    or other personal data reach Rasa's tracker store."""

    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    identity_id: Mapped[str] = mapped_column(ForeignKey("channel_identities.id"), unique=True)
    citizen_id: Mapped[str] = mapped_column(ForeignKey("citizens.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A short lease taken by the replica processing this conversation's inbound messages,
    # so that they are handled in order, one at a time, whichever replica received them.
    lease_owner: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None] = mapped_column()
    # SMS pages not yet sent because of the segment budget; "MORE" sends the next one.
    pending_pages: Mapped[list[str] | None] = mapped_column(JSON)
    # When the sender was last told they are sending too fast (told once per window).
    rate_notice_at: Mapped[datetime | None] = mapped_column()
    # The Rasa sender id this conversation speaks as: its own id, or, once the citizen
    # linked this device to another one, that conversation's, so one dialogue (an open
    # form included) continues on whichever device the citizen writes from.
    dialogue_id: Mapped[str | None] = mapped_column(String(32))

    @property
    def rasa_sender(self) -> str:
        return self.dialogue_id or self.id

    identity: Mapped[ChannelIdentity] = relationship()


# The rows of ``ix_messages_waiting`` (queries use it through ``WAITING_TERMS``).
WAITING = text("processed_at IS NULL AND direction = 'INBOUND'")


class Message(Base):
    """Every message in and out, stored before it is processed so nothing is lost."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("channel", "external_id", name="uq_messages_channel_external_id"),
        Index("ix_messages_conversation_created", "conversation_id", "created_at"),
        # The inbound messages still to process (outbound ones are never "processed"):
        # each message's drain and every replica's sweep, each second, look for them, and
        # the table grows with every message ever exchanged. Usually empty.
        Index(
            "ix_messages_waiting",
            "conversation_id",
            "id",
            sqlite_where=WAITING,
            postgresql_where=WAITING,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    direction: Mapped[Direction] = mapped_column(Enum(Direction, native_enum=False, length=8))
    channel: Mapped[str] = mapped_column(String(32))
    # The provider's id (Twilio MessageSid, Telegram update_id...) for de-duplication.
    external_id: Mapped[str | None] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text, default="")
    buttons: Mapped[list[dict[str, str]] | None] = mapped_column(JSON)
    intent: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Attachments (MMS pictures...) that came with an inbound message: not read, answered.
    media_count: Mapped[int] = mapped_column(default=0)
    # Inbound messages processed in the background (SMS): set once answered or dropped.
    processed_at: Mapped[datetime | None] = mapped_column()
    # What a channel needs to process the message beyond its text (Telegram: the kind of
    # message, the callback query to answer, a shared contact or location).
    provider_data: Mapped[dict[str, Any] | None] = mapped_column()
    # The call-centre agent who wrote an outbound message (``None``: the bot or a notice).
    staff_id: Mapped[str | None] = mapped_column(ForeignKey("staff.id"))


# A conversation's messages newest first, in the order of ix_messages_conversation_created
# (with SQLite's rowid), so reading its latest message does not read its whole history.
# One drain at a time writes a conversation, so its times follow its ids.
LATEST_FIRST = (Message.created_at.desc(), Message.id.desc())
# WAITING as query terms: a query that has them all can read ix_messages_waiting.
WAITING_TERMS = (Message.processed_at.is_(None), Message.direction == Direction.INBOUND)


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"  # waiting in our outbox (or for a retry)
    ACCEPTED = "accepted"  # the provider took it (Twilio: queued / accepted)
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    SUPPRESSED = "suppressed"  # never sent: the recipient opted out


class Delivery(Base):
    """One outbound provider message (an SMS page) in the outbox, and its fate.

    Rows are claimed with a lease before sending, so two replicas never send one twice;
    a crash mid-send leaves the lease to expire and another replica to retry.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        UniqueConstraint("channel", "provider_id", name="uq_deliveries_provider_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    identity_id: Mapped[str] = mapped_column(ForeignKey("channel_identities.id"))
    channel: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    segments: Mapped[int] = mapped_column(default=1)
    # Compliance replies (the STOP confirmation) go out even to an opted-out number.
    ignore_opt_out: Mapped[bool] = mapped_column(default=False)
    # A keyboard to show with the text on channels that have them (Telegram): the
    # ``inline`` options, or a ``contact`` request button. Removed once answered.
    keyboard: Mapped[dict[str, Any] | None] = mapped_column()
    keyboard_closed: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.QUEUED)
    provider_id: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class BackendEvent(Base):
    """A status event a backend pushed to us, kept to refuse replays (its id is unique)."""

    __tablename__ = "backend_events"
    __table_args__ = (UniqueConstraint("source", "event_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class LinkCode(Base):
    """A one-time code joining another device to a citizen (and to their dialogue).

    Only a hash is stored; a code expires after minutes and is used at most once.
    """

    __tablename__ = "link_codes"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    citizen_id: Mapped[str] = mapped_column(ForeignKey("citizens.id"))
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    used_by: Mapped[str | None] = mapped_column(ForeignKey("channel_identities.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LinkAttempt(Base):
    """A code typed on a device, kept to limit guessing per identity."""

    __tablename__ = "link_attempts"
    __table_args__ = (Index("ix_link_attempts_identity_created", "identity_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    identity_id: Mapped[str] = mapped_column(ForeignKey("channel_identities.id"))
    succeeded: Mapped[bool] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApplicationDraft(Base):
    """Answers collected so far for an application not yet filed, one per conversation."""

    __tablename__ = "application_drafts"

    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), primary_key=True)
    service_code: Mapped[str] = mapped_column(String(64))
    answers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The field the citizen is being asked again (after choosing "change" at the summary).
    editing_field: Mapped[str | None] = mapped_column(String(64))
    failed_attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Application(Base):
    """An application filed through the gateway, and what the backend last told us."""

    __tablename__ = "applications"
    __table_args__ = (
        # The supervisors' list of applications a person must look at (usually few).
        Index(
            "ix_applications_needs_attention",
            "needs_attention_since",
            sqlite_where=text("stage = 'needs_attention'"),
            postgresql_where=text("stage = 'needs_attention'"),
        ),
        # A backend's stage webhook names the application by the backend's id.
        Index("ix_applications_backend_id", "backend_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # The citizen's reference once the backend accepted the application: the gateway's
    # provisional one (issue 24; older rows may hold a backend's), which stays valid
    # either way. The backend's id, never shown to the citizen as theirs, is
    # ``backend_id``; a backend's stage webhook names the application by it.
    reference: Mapped[str | None] = mapped_column(String(16), unique=True)
    provisional_reference: Mapped[str] = mapped_column(String(16), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True, default=new_id)
    service_code: Mapped[str] = mapped_column(String(64))
    connector: Mapped[str] = mapped_column(String(32))
    backend_id: Mapped[str | None] = mapped_column(String(128))
    citizen_id: Mapped[str] = mapped_column(ForeignKey("citizens.id"), index=True)
    identity_id: Mapped[str] = mapped_column(ForeignKey("channel_identities.id"))
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    answers: Mapped[dict[str, Any]] = mapped_column()
    language: Mapped[str] = mapped_column(String(8))
    # "submitting" / "pending_submission" until the backend accepts, then its Stage.
    stage: Mapped[str] = mapped_column(String(32), default="submitting")
    # Submission retries (an outage never loses an application): attempts so far, when to
    # try again, and a short lease so that one replica at a time submits it.
    submit_attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    lease_until: Mapped[datetime | None] = mapped_column()
    # Polled backends: when the status was last read (open applications only).
    polled_at: Mapped[datetime | None] = mapped_column()
    # What the backend last answered when it did not take the application: "transient"
    # (retried) or "refused" (a person must look), its HTTP status (None: no answer) and a
    # short sanitised excerpt of its body; how many times in a row it answered the same.
    first_attempt_at: Mapped[datetime | None] = mapped_column()
    last_error_kind: Mapped[str | None] = mapped_column(String(16))
    last_error_status: Mapped[int | None] = mapped_column()
    last_error_excerpt: Mapped[str | None] = mapped_column(String(300))
    same_error_count: Mapped[int] = mapped_column(default=0)
    # stage "needs_attention": since when, and why ("refused", "attempts_cap", "time_cap").
    needs_attention_since: Mapped[datetime | None] = mapped_column()
    needs_attention_reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class VerificationAttempt(Base):
    """A second-factor answer given to see an application's status from another identity."""

    __tablename__ = "verification_attempts"
    __table_args__ = (
        Index("ix_verification_application_identity", "application_id", "identity_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"))
    identity_id: Mapped[str] = mapped_column(ForeignKey("channel_identities.id"))
    succeeded: Mapped[bool] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- the call centre ----------------------------------------------------------------------


class StaffRole(enum.StrEnum):
    AGENT = "agent"  # sees the queues of their teams
    SUPERVISOR = "supervisor"  # sees every queue and can reassign


class StaffMember(Base):
    """A call-centre account. Only an argon2 hash of the password is stored."""

    __tablename__ = "staff"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=StaffRole.AGENT)
    teams: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(default=True)
    # Lock-out: failed logins in a row, and until when the account refuses logins.
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column()
    # Refreshed while the console is open (its live stream): "online" for the queue.
    last_seen_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StaffSession(Base):
    """A console login. The cookie holds a random token; only its hash is stored."""

    __tablename__ = "staff_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    staff_id: Mapped[str] = mapped_column(ForeignKey("staff.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class HandoffStatus(enum.StrEnum):
    CHOOSING = "choosing"  # offered a message or a call back; the citizen is choosing
    QUEUED = "queued"  # waiting for an agent
    CLAIMED = "claimed"  # an agent owns the conversation: the bot is silent
    CLOSED = "closed"


OPEN_HANDOFF = (HandoffStatus.CHOOSING, HandoffStatus.QUEUED, HandoffStatus.CLAIMED)


class HandoffKind(enum.StrEnum):
    CHAT = "chat"  # the citizen waits to chat now
    MESSAGE = "message"  # left a message for the next shift
    CALLBACK = "callback"  # asked to be called at a chosen time
    AGENT = "agent"  # an agent started it ("continue by text")


class Handoff(Base):
    """A conversation handed to the call centre: queued, owned by an agent, closed.

    At most one is open per conversation. While one is claimed (or a live chat waits)
    the gateway does not pass the citizen's messages to Rasa: the pause is this row, so
    it holds across restarts and on every replica.
    """

    __tablename__ = "handoffs"
    __table_args__ = (
        Index("ix_handoffs_status_team", "status", "team"),
        Index(
            "uq_handoffs_open_conversation",
            "conversation_id",
            unique=True,
            sqlite_where=text("status != 'closed'"),
            postgresql_where=text("status != 'closed'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    citizen_id: Mapped[str] = mapped_column(ForeignKey("citizens.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    team: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default=HandoffKind.CHAT)
    status: Mapped[str] = mapped_column(String(16), default=HandoffStatus.QUEUED)
    # Why: "asked", "not_understood", "answer_refused", "agent".
    reason: Mapped[str] = mapped_column(String(32))
    callback_at: Mapped[datetime | None] = mapped_column()
    callback_number: Mapped[str | None] = mapped_column(String(32))
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("staff.id"))
    # The bot's open question when the citizen left the dialogue, asked again on hand-back.
    resume_message_id: Mapped[int | None] = mapped_column()
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column()
    # "handed_back" or the agent's outcome ("resolved", "application_filed"...).
    outcome: Mapped[str | None] = mapped_column(String(32))
    # Queue updates to the citizen (at most one per interval: SMS costs money).
    notified_at: Mapped[datetime | None] = mapped_column()
    notified_position: Mapped[int | None] = mapped_column()
    feedback_asked_at: Mapped[datetime | None] = mapped_column()
    feedback_score: Mapped[int | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class HandoffNote(Base):
    """An internal note on a handoff: staff only, never sent to the citizen."""

    __tablename__ = "handoff_notes"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    handoff_id: Mapped[str] = mapped_column(ForeignKey("handoffs.id"), index=True)
    staff_id: Mapped[str] = mapped_column(ForeignKey("staff.id"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Who did what in the console: logins, conversations opened, every action taken."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_created", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    staff_id: Mapped[str | None] = mapped_column(ForeignKey("staff.id"), index=True)
    action: Mapped[str] = mapped_column(String(48))
    conversation_id: Mapped[str | None] = mapped_column(String(32), index=True)
    handoff_id: Mapped[str | None] = mapped_column(String(32))
    # Ids and outcomes only: the message texts are in the transcript, not here.
    detail: Mapped[dict[str, Any] | None] = mapped_column()
    client_address: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def table_of(model: type[Base]) -> Table:
    """A model's Core table, for the hot path's prebuilt statements: an UPDATE or INSERT
    on the table skips the ORM's unit of work and its session synchronisation."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def inserted_id(result: Result[Any]) -> Any:
    """The key a one-row INSERT of :func:`table_of`'s table made (lastrowid or RETURNING,
    whichever the driver uses)."""
    assert isinstance(result, CursorResult)
    key = result.inserted_primary_key
    assert key is not None
    return key[0]
