"""Staff passwords, console sessions and lock-out.

Only hashes are stored: argon2id for passwords, SHA-256 for session tokens (they are
long and random, so a fast hash suffices), so a copy of the database logs nobody in.
Every function takes ``now`` or works without a clock, so tests never sleep; none of
them commits: the caller owns the transaction (and the audit entry that goes with it).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import StaffMember, StaffRole, StaffSession, as_utc

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(hours=12)
MIN_PASSWORD_LENGTH = 12

# argon2-cffi's defaults (argon2id, RFC 9106 low-memory profile); raising them later
# upgrades stored hashes at the next login (see ``check_needs_rehash``).
_hasher = PasswordHasher()


def normalise_username(username: str) -> str:
    """Usernames are case-insensitive: ``Alice `` and ``alice`` are one account."""
    return username.strip().lower()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True only for the right password; a wrong one or a damaged hash is just False,
    so a login form never turns a bad row into a server error."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@cache
def _dummy_hash() -> str:
    """A hash with the real parameters, verified for unknown accounts so that they cost
    as much time as known ones: response times do not reveal which usernames exist."""
    return _hasher.hash(secrets.token_urlsafe(16))


class LoginOutcome(enum.Enum):
    OK = "ok"
    INVALID = "invalid"
    LOCKED = "locked"


@dataclass(frozen=True)
class Login:
    """The result of a login attempt; ``staff`` is set only when ``outcome`` is OK."""

    outcome: LoginOutcome
    staff: StaffMember | None = None


async def _staff_by_username(session: AsyncSession, username: str) -> StaffMember | None:
    return await session.scalar(
        select(StaffMember).where(StaffMember.username == normalise_username(username))
    )


def _is_locked(staff: StaffMember, now: datetime) -> bool:
    return staff.locked_until is not None and as_utc(staff.locked_until) > now


async def authenticate(session: AsyncSession, username: str, password: str, now: datetime) -> Login:
    """Check a console login, counting failures and locking the account after
    ``MAX_FAILED_LOGINS`` in a row, which caps online guessing. The caller commits
    (failures included: the counter must persist)."""
    now = as_utc(now)
    staff = await _staff_by_username(session, username)
    if staff is None or not staff.active:
        verify_password(_dummy_hash(), password)
        return Login(LoginOutcome.INVALID)
    if _is_locked(staff, now):
        # Not checked, not counted: guessing during a lock-out learns nothing and
        # does not extend it.
        return Login(LoginOutcome.LOCKED)
    if not verify_password(staff.password_hash, password):
        staff.failed_logins += 1
        if staff.failed_logins >= MAX_FAILED_LOGINS:
            staff.locked_until = now + LOCKOUT
            staff.failed_logins = 0
            return Login(LoginOutcome.LOCKED)
        return Login(LoginOutcome.INVALID)
    staff.failed_logins = 0
    staff.locked_until = None
    if _hasher.check_needs_rehash(staff.password_hash):
        staff.password_hash = hash_password(password)
    return Login(LoginOutcome.OK, staff)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def open_session(session: AsyncSession, staff: StaffMember, now: datetime) -> str:
    """Start a console session and return the token for the cookie (never stored as is).
    The caller commits."""
    token = secrets.token_urlsafe(32)
    session.add(
        StaffSession(
            token_hash=_token_hash(token),
            staff_id=staff.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=as_utc(now),
            expires_at=as_utc(now) + SESSION_LIFETIME,
        )
    )
    return token


async def find_session(
    session: AsyncSession, token: str | None, now: datetime
) -> tuple[StaffSession, StaffMember] | None:
    """The live session a cookie token belongs to and its owner; None when the token is
    missing, unknown or expired, or the account was deactivated meanwhile."""
    if not token:
        return None
    row = (
        await session.execute(
            select(StaffSession, StaffMember)
            .join(StaffMember, StaffMember.id == StaffSession.staff_id)
            .where(StaffSession.token_hash == _token_hash(token))
        )
    ).first()
    if row is None:
        return None
    staff_session, staff = row
    if as_utc(staff_session.expires_at) <= as_utc(now) or not staff.active:
        return None
    return staff_session, staff


async def close_session(session: AsyncSession, token: str) -> None:
    """Log out: the token stops working at once, on every replica. The caller commits."""
    await session.execute(delete(StaffSession).where(StaffSession.token_hash == _token_hash(token)))


def csrf_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison, so the token cannot be guessed byte by byte."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def check_password_policy(password: str) -> None:
    """Length is what resists guessing; composition rules mostly make passwords shorter
    to remember, so only a minimum length is enforced."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")


async def create_staff(
    session: AsyncSession,
    username: str,
    display_name: str,
    password: str,
    role: StaffRole,
    teams: Sequence[str],
) -> StaffMember:
    """Add an account. ValueError for a weak password, an empty username or one already
    taken. The caller commits (a concurrent duplicate then fails on the unique index)."""
    check_password_policy(password)
    username = normalise_username(username)
    if not username:
        raise ValueError("a username cannot be empty")
    if await _staff_by_username(session, username) is not None:
        raise ValueError(f"username {username!r} is already taken")
    staff = StaffMember(
        username=username,
        display_name=display_name.strip() or username,
        password_hash=hash_password(password),
        role=StaffRole(role).value,
        teams=[team.strip() for team in teams if team.strip()],
        active=True,
        failed_logins=0,
    )
    session.add(staff)
    await session.flush()
    return staff


async def set_password(session: AsyncSession, username: str, password: str) -> bool:
    """Replace a password (ValueError if weak), lift any lock-out and log the account
    out everywhere, since a reset usually means the old password leaked. False for an
    unknown username. The caller commits."""
    check_password_policy(password)
    staff = await _staff_by_username(session, username)
    if staff is None:
        return False
    staff.password_hash = hash_password(password)
    staff.failed_logins = 0
    staff.locked_until = None
    await session.execute(delete(StaffSession).where(StaffSession.staff_id == staff.id))
    return True


async def unlock(session: AsyncSession, username: str) -> bool:
    """Lift a lock-out before it expires; False for an unknown username. The caller commits."""
    staff = await _staff_by_username(session, username)
    if staff is None:
        return False
    staff.failed_logins = 0
    staff.locked_until = None
    return True
