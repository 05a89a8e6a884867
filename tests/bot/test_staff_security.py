"""Staff passwords, lock-out, console sessions and the account CLI, against a migrated
SQLite database. Time is passed explicitly: nothing sleeps."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.console.security import (
    LOCKOUT,
    MAX_FAILED_LOGINS,
    MIN_PASSWORD_LENGTH,
    SESSION_LIFETIME,
    LoginOutcome,
    authenticate,
    check_password_policy,
    close_session,
    create_staff,
    csrf_matches,
    find_session,
    hash_password,
    open_session,
    set_password,
    unlock,
    verify_password,
)
from bot.db.models import StaffMember, StaffRole, StaffSession
from bot.db.session import create_engine, session_factory
from support import db
from support.processes import run_python
from support.stack import migrate

PASSWORD = "correct horse battery"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@cache
def password_hash() -> str:
    """Hashed once for the module: argon2 is slow on purpose."""
    return hash_password(PASSWORD)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    url = db.database_url(tmp_path)
    migrate(url)
    return url


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def add_staff(
    sessions: async_sessionmaker[AsyncSession], username: str = "alice", *, active: bool = True
) -> str:
    async with sessions() as session:
        staff = StaffMember(
            username=username,
            display_name=username.title(),
            password_hash=password_hash(),
            role=StaffRole.AGENT,
            teams=["permits"],
            active=active,
        )
        session.add(staff)
        await session.commit()
        return staff.id


async def staff_row(sessions: async_sessionmaker[AsyncSession], username: str) -> StaffMember:
    async with sessions() as session:
        staff = await session.scalar(select(StaffMember).where(StaffMember.username == username))
        assert staff is not None
        return staff


async def login(
    sessions: async_sessionmaker[AsyncSession], username: str, password: str, now: datetime
) -> LoginOutcome:
    async with sessions() as session:
        result = await authenticate(session, username, password, now)
        await session.commit()
        assert (result.staff is not None) == (result.outcome is LoginOutcome.OK)
        return result.outcome


# --- hashing ------------------------------------------------------------------------------


def test_passwords_are_hashed_with_argon2id() -> None:
    hashed = password_hash()
    assert hashed.startswith("$argon2id$")
    assert PASSWORD not in hashed
    assert verify_password(hashed, PASSWORD)
    assert not verify_password(hashed, PASSWORD + "!")


def altered_digest() -> str:
    """A well-formed hash whose digest was altered (one character mid-digest)."""
    hashed = password_hash()
    replacement = "A" if hashed[-10] != "A" else "z"
    return hashed[:-10] + replacement + hashed[-9:]


@pytest.mark.parametrize(
    "damaged",
    ["", "not a hash", "$argon2id$v=19$m=65536,t=3,p=4$garbage", "$argon2id$", None],
)
def test_a_damaged_hash_never_verifies(damaged: str | None) -> None:
    assert verify_password(altered_digest() if damaged is None else damaged, PASSWORD) is False


# --- authenticate -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "password", "active", "expected"),
    [
        ("alice", PASSWORD, True, LoginOutcome.OK),
        ("  Alice ", PASSWORD, True, LoginOutcome.OK),
        ("alice", "wrong password!", True, LoginOutcome.INVALID),
        ("bob", PASSWORD, True, LoginOutcome.INVALID),
        ("alice", PASSWORD, False, LoginOutcome.INVALID),
    ],
    ids=["right", "case-and-spaces", "wrong", "unknown-user", "inactive"],
)
async def test_authenticate(
    sessions: async_sessionmaker[AsyncSession],
    username: str,
    password: str,
    active: bool,
    expected: LoginOutcome,
) -> None:
    await add_staff(sessions, "alice", active=active)
    assert await login(sessions, username, password, NOW) is expected


async def test_repeated_failures_lock_the_account_until_the_lockout_ends(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add_staff(sessions)
    outcomes = [
        await login(sessions, "alice", "wrong password!", NOW) for _ in range(MAX_FAILED_LOGINS)
    ]
    assert outcomes == [LoginOutcome.INVALID] * (MAX_FAILED_LOGINS - 1) + [LoginOutcome.LOCKED]
    staff = await staff_row(sessions, "alice")
    assert staff.failed_logins == 0
    assert staff.locked_until is not None

    # Even the right password is refused, and attempts are not counted, until the end.
    just_before = NOW + LOCKOUT - timedelta(seconds=1)
    assert await login(sessions, "alice", PASSWORD, just_before) is LoginOutcome.LOCKED
    assert await login(sessions, "alice", "wrong password!", just_before) is LoginOutcome.LOCKED
    assert (await staff_row(sessions, "alice")).failed_logins == 0

    assert await login(sessions, "alice", PASSWORD, NOW + LOCKOUT) is LoginOutcome.OK
    staff = await staff_row(sessions, "alice")
    assert (staff.failed_logins, staff.locked_until) == (0, None)


async def test_a_success_resets_the_failure_count(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add_staff(sessions)
    for _ in range(MAX_FAILED_LOGINS - 1):
        assert await login(sessions, "alice", "wrong password!", NOW) is LoginOutcome.INVALID
    assert (await staff_row(sessions, "alice")).failed_logins == MAX_FAILED_LOGINS - 1
    assert await login(sessions, "alice", PASSWORD, NOW) is LoginOutcome.OK
    assert (await staff_row(sessions, "alice")).failed_logins == 0
    # The count starts again: one more failure does not lock.
    assert await login(sessions, "alice", "wrong password!", NOW) is LoginOutcome.INVALID


# --- sessions -----------------------------------------------------------------------------


async def test_sessions_open_find_expire_and_close(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    staff_id = await add_staff(sessions)
    async with sessions() as session:
        staff = await session.get(StaffMember, staff_id)
        assert staff is not None
        token = await open_session(session, staff, NOW)
        other = await open_session(session, staff, NOW)
        await session.commit()
    assert token != other

    async with sessions() as session:
        stored = await session.scalars(select(StaffSession))
        rows = list(stored)
        assert len(rows) == 2
        assert all(token not in (row.token_hash, row.csrf_token) for row in rows)

        found = await find_session(session, token, NOW + timedelta(minutes=5))
        assert found is not None
        console_session, member = found
        assert member.id == staff_id
        assert len(console_session.csrf_token) >= 32
        assert console_session.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert rows[0].csrf_token != rows[1].csrf_token

        assert await find_session(session, None, NOW) is None
        assert await find_session(session, "", NOW) is None
        assert await find_session(session, "not-a-token", NOW) is None
        assert await find_session(session, token, NOW + SESSION_LIFETIME) is None
        assert await find_session(session, token, NOW + SESSION_LIFETIME - timedelta(seconds=1))

        await close_session(session, token)
        await session.commit()

    async with sessions() as session:
        assert await find_session(session, token, NOW) is None
        assert await find_session(session, other, NOW) is not None


async def test_a_deactivated_account_loses_its_sessions(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    staff_id = await add_staff(sessions)
    async with sessions() as session:
        staff = await session.get(StaffMember, staff_id)
        assert staff is not None
        token = await open_session(session, staff, NOW)
        staff.active = False
        await session.commit()
    async with sessions() as session:
        assert await find_session(session, token, NOW) is None


@pytest.mark.parametrize(
    ("expected", "given", "matches"),
    [
        ("abc123", "abc123", True),
        ("abc123", "abc124", False),
        ("abc123", "abc12", False),
        ("abc123", "", False),
        ("abc123", None, False),
        ("", "", False),
        ("abc123", "ébc123", False),
    ],
)
def test_csrf_matches(expected: str, given: str | None, matches: bool) -> None:
    assert csrf_matches(expected, given) is matches


@pytest.mark.parametrize(
    ("password", "accepted"),
    [
        ("x" * (MIN_PASSWORD_LENGTH - 1), False),
        ("", False),
        ("x" * MIN_PASSWORD_LENGTH, True),
        (PASSWORD, True),
    ],
)
def test_password_policy(password: str, accepted: bool) -> None:
    if accepted:
        check_password_policy(password)
    else:
        with pytest.raises(ValueError, match="at least"):
            check_password_policy(password)


# --- account management -------------------------------------------------------------------


async def test_create_staff_checks_the_policy_and_duplicates(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        with pytest.raises(ValueError, match="at least"):
            await create_staff(session, "carol", "Carol", "short", StaffRole.AGENT, ["permits"])
        await add_staff(sessions, "alice")
        with pytest.raises(ValueError, match="taken"):
            await create_staff(session, " ALICE ", "A", PASSWORD, StaffRole.AGENT, ["permits"])
        assert not await set_password(session, "nobody", PASSWORD)
        assert not await unlock(session, "nobody")


async def test_set_password_unlocks_and_logs_out(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    staff_id = await add_staff(sessions)
    async with sessions() as session:
        staff = await session.get(StaffMember, staff_id)
        assert staff is not None
        token = await open_session(session, staff, NOW)
        staff.locked_until = NOW + LOCKOUT
        await session.commit()
    async with sessions() as session:
        with pytest.raises(ValueError, match="at least"):
            await set_password(session, "alice", "short")
        assert await set_password(session, "Alice", "a brand new passphrase")
        await session.commit()
    async with sessions() as session:
        assert await find_session(session, token, NOW) is None
    assert await login(sessions, "alice", PASSWORD, NOW) is LoginOutcome.INVALID
    assert await login(sessions, "alice", "a brand new passphrase", NOW) is LoginOutcome.OK


# --- the command line ---------------------------------------------------------------------


def cli(database_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return run_python("-m", "bot.console", *args, env={"DATABASE_URL": database_url}, stdin=stdin)


async def test_the_cli_manages_accounts(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    create = [
        "create-staff",
        "Dana",
        "--name",
        "Dana Scully",
        "--role",
        "supervisor",
        "--team",
        "permits",
        "--team",
        "taxes",
        "--password-stdin",
    ]
    done = cli(database_url, *create, stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1
    assert "dana" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr

    dana = await staff_row(sessions, "dana")
    assert (dana.display_name, dana.role, dana.teams) == (
        "Dana Scully",
        StaffRole.SUPERVISOR,
        ["permits", "taxes"],
    )
    assert await login(sessions, "dana", PASSWORD, NOW) is LoginOutcome.OK

    duplicate = cli(database_url, *create, stdin=PASSWORD + "\n")
    assert duplicate.returncode == 2
    assert "taken" in duplicate.stderr

    create[1] = "erin"
    short = cli(database_url, *create, stdin="short\n")
    assert short.returncode == 2
    assert "at least" in short.stderr
    assert "short" not in short.stdout

    for _ in range(MAX_FAILED_LOGINS):
        await login(sessions, "dana", "wrong password!", NOW)
    assert await login(sessions, "dana", PASSWORD, NOW) is LoginOutcome.LOCKED
    unlocked = cli(database_url, "unlock", "dana")
    assert unlocked.returncode == 0, unlocked.stderr
    assert await login(sessions, "dana", PASSWORD, NOW) is LoginOutcome.OK

    new_password = "another long passphrase"
    changed = cli(database_url, "set-password", "dana", "--password-stdin", stdin=new_password)
    assert changed.returncode == 0, changed.stderr
    assert new_password not in changed.stdout + changed.stderr
    assert await login(sessions, "dana", new_password, NOW) is LoginOutcome.OK

    nobody = cli(database_url, "set-password", "nobody", "--password-stdin", stdin=PASSWORD)
    assert nobody.returncode == 2
    assert "nobody" in nobody.stderr
    unknown = cli(database_url, "unlock", "nobody")
    assert unknown.returncode == 2
    assert "nobody" in unknown.stderr
    weak = cli(database_url, "set-password", "dana", "--password-stdin", stdin="short\n")
    assert weak.returncode == 2
