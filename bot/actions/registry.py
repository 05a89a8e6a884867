"""Action name → handler. Names are unique; an unknown name is refused to Rasa."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.actions.context import ActionContext

Handler = Callable[[ActionContext], Awaitable[None]]
ACTIONS: dict[str, Handler] = {}


def action(name: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        if name in ACTIONS:
            raise ValueError(f"action {name} registered twice")
        ACTIONS[name] = handler
        return handler

    return register
