"""HTTP endpoints Rasa calls: the custom-action server and the NLG server.

Both require the bearer token configured in ``endpoints.yml``. The conversation is looked
up by Rasa's ``sender_id`` (our conversation id), so handlers work with the citizen's
own records and language.
"""

from __future__ import annotations

import hmac
import logging
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, status
from fastapi.responses import JSONResponse
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.actions.context import ActionContext
from bot.actions.handlers import ACTIONS
from bot.actions.protocol import ActionCall, NlgCall, parsed_body
from bot.db.models import LATEST_FIRST, Citizen, Conversation, Direction, Message, table_of
from bot.deps import Runtime, get_runtime
from bot.i18n import localizer
from bot.nlg import render_response

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/rasa", tags=["rasa"])


def require_rasa(
    runtime: Annotated[Runtime, Depends(get_runtime)],
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    expected = f"Bearer {runtime.settings.action_endpoint_token.get_secret_value()}"
    if authorization is None or not hmac.compare_digest(authorization.encode(), expected.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "forbidden")


@router.post("/actions", dependencies=[Depends(require_rasa)])
async def run_action(
    call: Annotated[ActionCall, Depends(parsed_body(ActionCall))],
    runtime: Annotated[Runtime, Depends(get_runtime)],
) -> Any:
    handler = ACTIONS.get(call.next_action)
    if handler is None:
        return JSONResponse(
            {"action_name": call.next_action, "error": f"no action {call.next_action}"},
            status_code=404,
        )
    async with runtime.sessions() as session:
        conversation, citizen = await _conversation_and_citizen(session, call.sender_id)
        if conversation is None or citizen is None:
            return JSONResponse(
                {"action_name": call.next_action, "error": "unknown conversation"}, status_code=400
            )
        ctx = ActionContext(
            call=call,
            session=session,
            conversation=conversation,
            citizen=citizen,
            words=localizer(citizen.language, runtime.settings.default_language),
            catalogue=runtime.catalogue,
            connectors=runtime.connectors,
            settings=runtime.settings,
            today=date.today(),
            handoffs=runtime.handoffs,
            metrics=runtime.metrics,
            clock=runtime.clock,
        )
        await handler(ctx)
        await _record_intent(session, ctx)
        await session.commit()
    return {"events": ctx.events, "responses": ctx.responses}


# Built once: Rasa calls these on every action and response; building a statement cost
# more than running it.
CONVERSATION_AND_CITIZEN = (
    select(Conversation, Citizen)
    .join(Citizen, Citizen.id == Conversation.citizen_id)
    .where(Conversation.id == bindparam("conversation_id"))
)
LATEST_INBOUND = (
    select(Message.id, Message.intent)
    .where(
        Message.conversation_id == bindparam("conversation_id"),
        Message.direction == Direction.INBOUND,
    )
    .order_by(*LATEST_FIRST)
    .limit(1)
)
_messages = table_of(Message)
SET_INTENT = (
    update(_messages)
    .where(_messages.c.id == bindparam("message_id"))
    .values(intent=bindparam("intent"))
)
LANGUAGE_OF = (
    select(Citizen.language)
    .join(Conversation, Conversation.citizen_id == Citizen.id)
    .where(Conversation.id == bindparam("conversation_id"))
)


async def _conversation_and_citizen(
    session: AsyncSession, conversation_id: str
) -> tuple[Conversation | None, Citizen | None]:
    """Rasa's sender and who they are, in one query (every action and response asks)."""
    found = await session.execute(CONVERSATION_AND_CITIZEN, {"conversation_id": conversation_id})
    row = found.first()
    return (row[0], row[1]) if row is not None else (None, None)


async def _record_intent(session: AsyncSession, ctx: ActionContext) -> None:
    """Keep what the bot understood beside the message (for agents and evaluation): a
    look at two columns, and a write only the first time (every action call asks)."""
    if ctx.intent is None:
        return
    found = await session.execute(LATEST_INBOUND, {"conversation_id": ctx.conversation.id})
    latest = found.first()
    if latest is not None and latest.intent is None:
        await session.execute(SET_INTENT, {"message_id": latest.id, "intent": ctx.intent})


@router.post("/nlg", dependencies=[Depends(require_rasa)])
async def nlg(
    call: Annotated[NlgCall, Depends(parsed_body(NlgCall))],
    runtime: Annotated[Runtime, Depends(get_runtime)],
) -> Any:
    async with runtime.sessions() as session:
        language = await session.scalar(LANGUAGE_OF, {"conversation_id": call.tracker.sender_id})
    words = localizer(language, runtime.settings.default_language)
    rendered = render_response(runtime.responses, call.response, words)
    if rendered is None:
        logger.error("no response named %s", call.response)
        rendered = render_response(runtime.responses, "utter_default", words) or {"text": ""}
    return rendered
