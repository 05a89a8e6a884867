"""Manage call-centre accounts from the command line: ``python -m bot.console``.

Accounts are created here rather than in the console, so that the first supervisor
exists before anyone can log in. Passwords are read from a prompt or stdin, never
from the arguments (they would end up in shell history and ``ps``).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError

from bot.console import security
from bot.db.models import StaffRole
from bot.db.session import create_engine, session_factory
from bot.settings import get_settings

STDIN_HELP = "read the password from the first line of stdin (for scripts)"


class CommandError(Exception):
    """A refusal worth one line on stderr and exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot.console", description="Manage call-centre staff accounts."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    create = commands.add_parser("create-staff", help="add an account")
    create.add_argument("username")
    create.add_argument("--name", required=True, help="display name shown to colleagues")
    create.add_argument("--role", choices=[role.value for role in StaffRole], required=True)
    create.add_argument(
        "--team", action="append", required=True, dest="teams", help="repeat for several teams"
    )
    create.add_argument("--password-stdin", action="store_true", help=STDIN_HELP)

    reset = commands.add_parser("set-password", help="replace a password, lift any lock-out")
    reset.add_argument("username")
    reset.add_argument("--password-stdin", action="store_true", help=STDIN_HELP)

    unlock = commands.add_parser("unlock", help="lift a lock-out before it expires")
    unlock.add_argument("username")
    return parser


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != password:
        raise CommandError("the passwords do not match")
    return password


async def _run(args: argparse.Namespace, password: str | None) -> str:
    engine = create_engine(get_settings().database_url)
    try:
        async with session_factory(engine)() as session:
            if args.command == "create-staff":
                assert password is not None
                staff = await security.create_staff(
                    session, args.username, args.name, password, StaffRole(args.role), args.teams
                )
                await session.commit()
                return (
                    f"created {staff.role} {staff.username} ({staff.display_name}),"
                    f" teams: {', '.join(staff.teams)}"
                )
            if args.command == "set-password":
                assert password is not None
                if not await security.set_password(session, args.username, password):
                    raise CommandError(f"no staff member is called {args.username!r}")
                await session.commit()
                return f"password changed for {security.normalise_username(args.username)}"
            if not await security.unlock(session, args.username):
                raise CommandError(f"no staff member is called {args.username!r}")
            await session.commit()
            return f"unlocked {security.normalise_username(args.username)}"
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        password = None
        if args.command in ("create-staff", "set-password"):
            password = _read_password(args.password_stdin)
            # Refused before touching the database, so a typo costs no connection.
            security.check_password_policy(password)
        print(asyncio.run(_run(args, password)))
    except (CommandError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except IntegrityError:
        # Two creations racing for one username: the unique index decided.
        print(f"error: username {args.username!r} is already taken", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
