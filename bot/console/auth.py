"""Console logins: the session cookie, CSRF on every form, lock-out, and the audit trail.

The cookie is HttpOnly and SameSite=Strict (Secure in production); every state-changing
request must also carry the session's CSRF token (a form field or ``X-CSRF-Token``),
and the login form its own pre-session token (login CSRF).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bot.console.desk import audit
from bot.console.rendering import page
from bot.console.security import (
    LoginOutcome,
    authenticate,
    close_session,
    csrf_matches,
    find_session,
    normalise_username,
    open_session,
)
from bot.db.models import StaffMember, StaffSession, as_utc, utcnow
from bot.deps import RuntimeDep
from bot.settings import Environment

SESSION_COOKIE = "civicgate_console"
LOGIN_COOKIE = "civicgate_console_login"
CSRF_HEADER = "x-csrf-token"
ONLINE_REFRESH = timedelta(seconds=30)  # well inside bot.handoff.ONLINE_WINDOW (90 s)


class LoginRequired(Exception):  # noqa: N818 (an outcome, handled in bot.console.routes)
    """No valid session: pages redirect to the login form, the API answers 401."""


@dataclass(frozen=True, slots=True)
class Staff:
    """The signed-in staff member and their session (for its CSRF token)."""

    member: StaffMember
    session: StaffSession

    @property
    def csrf(self) -> str:
        return self.session.csrf_token


def mark_online(member: StaffMember, now: datetime) -> None:
    """ "Online" for routing and the wait estimate (bot.handoff.ONLINE_WINDOW); written
    at most every ONLINE_REFRESH, not on every request and every second of a stream."""
    if member.last_seen_at is None or as_utc(member.last_seen_at) <= now - ONLINE_REFRESH:
        member.last_seen_at = now


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def current_staff(request: Request, runtime: RuntimeDep) -> Staff:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise LoginRequired
    async with runtime.sessions() as session:
        found = await find_session(session, token, utcnow())
        if found is None:
            raise LoginRequired
        staff_session, member = found
        mark_online(member, utcnow())
        await session.commit()
    return Staff(member, staff_session)


async def checked_staff(request: Request, staff: Annotated[Staff, Depends(current_staff)]) -> Staff:
    """The signed-in staff member, for a request that changes something: CSRF checked."""
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf_token")
        given = value if isinstance(value, str) else None
    if not csrf_matches(staff.csrf, given):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "CSRF token missing or wrong")
    return staff


SignedIn = Annotated[Staff, Depends(current_staff)]
Acting = Annotated[Staff, Depends(checked_staff)]


def _cookie_secure(request: Request, runtime: RuntimeDep) -> bool:
    return request.url.scheme == "https" or runtime.settings.environment is Environment.PRODUCTION


def router() -> APIRouter:
    routes = APIRouter()

    @routes.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request, runtime: RuntimeDep) -> Response:
        return _login_page(request, runtime)

    @routes.post("/login")
    async def login(
        request: Request,
        runtime: RuntimeDep,
        username: Annotated[str, Form(max_length=64)],
        password: Annotated[str, Form(max_length=256)],
        csrf_token: Annotated[str, Form(max_length=128)] = "",
    ) -> Response:
        if not csrf_matches(request.cookies.get(LOGIN_COOKIE, ""), csrf_token):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "CSRF token missing or wrong")
        async with runtime.sessions() as session:
            result = await authenticate(session, username, password, utcnow())
            client = client_address(request)
            if result.outcome is not LoginOutcome.OK or result.staff is None:
                action = "login_locked" if result.outcome is LoginOutcome.LOCKED else "login_failed"
                # The account tried (staff names are not citizens' data), for lock-out reviews.
                audit(session, None, action, client=client, username=normalise_username(username))
                await session.commit()
                error = (
                    "Too many failed attempts. This account is locked for a while."
                    if result.outcome is LoginOutcome.LOCKED
                    else "Wrong username or password."
                )
                code = 429 if result.outcome is LoginOutcome.LOCKED else 401
                return _login_page(request, runtime, error, code)
            token = await open_session(session, result.staff, utcnow())
            audit(session, result.staff, "login", client=client)
            await session.commit()
        response = RedirectResponse("/console", status.HTTP_303_SEE_OTHER)
        _set_cookie(response, SESSION_COOKIE, token, _cookie_secure(request, runtime))
        response.delete_cookie(LOGIN_COOKIE, path="/console")
        return response

    @routes.post("/logout")
    async def logout(request: Request, runtime: RuntimeDep, staff: Acting) -> Response:
        async with runtime.sessions() as session:
            await close_session(session, request.cookies.get(SESSION_COOKIE, ""))
            audit(session, staff.member, "logout", client=client_address(request))
            await session.commit()
        response = RedirectResponse("/console/login", status.HTTP_303_SEE_OTHER)
        response.delete_cookie(SESSION_COOKIE, path="/console")
        return response

    return routes


def _login_page(
    request: Request, runtime: RuntimeDep, error: str | None = None, code: int = 200
) -> Response:
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
    response = page("login.html", code, csrf=token, error=error)
    _set_cookie(response, LOGIN_COOKIE, token, _cookie_secure(request, runtime))
    return response


def _set_cookie(response: Response, name: str, value: str, secure: bool) -> None:
    """Console cookies: never readable by scripts, never sent cross-site."""
    response.set_cookie(
        name, value, httponly=True, samesite="strict", secure=secure, path="/console"
    )
