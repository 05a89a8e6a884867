"""Every action handler module, imported so that their ``@action`` registrations exist.

Listed explicitly (not discovered): ``tests/bot/test_domain_contract.py`` checks that each
custom action the domain declares has exactly one handler here.
"""

from __future__ import annotations

from bot.actions import application, general, status, submission
from bot.actions.registry import ACTIONS

HANDLER_MODULES = (application, general, status, submission)

__all__ = ["ACTIONS", "HANDLER_MODULES"]
