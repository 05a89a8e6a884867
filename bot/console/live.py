"""Live updates for the console over Server-Sent Events.

Each stream polls the database once a second for what its page shows (the visible
queue, the open conversation's newest message), so an agent sees a message whichever
replica received it, with no broker. It also marks the agent online, and ends after a
few minutes or on shutdown; the browser's EventSource reconnects by itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from bot.console.auth import SignedIn, mark_online
from bot.console.routes import visible_handoff
from bot.console.views import last_message_id, queue_fingerprint
from bot.db.models import StaffMember, utcnow
from bot.deps import Runtime, RuntimeDep

POLL_SECONDS = 1.0
KEEPALIVE_EVERY = 15  # polls between comment lines (proxies drop silent streams)
STREAM_SECONDS = 300.0


def _event(name: str, data: object) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


async def _changes(
    request: Request, runtime: Runtime, staff_id: str, citizen_id: str | None
) -> AsyncIterator[str]:
    fingerprint, latest, polls = None, None, 0
    yield "retry: 2000\n\n"
    loop = asyncio.get_running_loop()
    ends = loop.time() + STREAM_SECONDS
    while loop.time() < ends and not runtime.stopping.is_set():
        async with runtime.sessions() as session:
            member = await session.get(StaffMember, staff_id)
            if member is None or not member.active:
                return
            mark_online(member, utcnow())
            now_fingerprint = await queue_fingerprint(session, member)
            now_latest = await last_message_id(session, citizen_id) if citizen_id else None
            await session.commit()
        if now_fingerprint != fingerprint:
            fingerprint = now_fingerprint
            yield _event("queue", {})
        if now_latest != latest:
            latest = now_latest
            yield _event("messages", {"latest": latest})
        polls += 1
        if polls % KEEPALIVE_EVERY == 0:
            yield ": keep-alive\n\n"
        if await request.is_disconnected():
            return
        await asyncio.sleep(POLL_SECONDS)


def router() -> APIRouter:
    routes = APIRouter()

    @routes.get("/events")
    async def events(
        request: Request, runtime: RuntimeDep, staff: SignedIn, handoff: str | None = None
    ) -> StreamingResponse:
        citizen_id = None  # whose transcript the page shows: looked up once per stream
        if handoff is not None:
            async with runtime.sessions() as session:
                citizen_id = (await visible_handoff(session, handoff, staff)).citizen_id
        return StreamingResponse(
            _changes(request, runtime, staff.member.id, citizen_id),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return routes
