"""The gateway's own log lines reach stderr at ``LOG_LEVEL`` when uvicorn runs it (uvicorn
configures only its own loggers), and carry no phone number in clear."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from support.db import database_url
from support.processes import run_python

PHONE = "+15145550100"
# What a fresh gateway process does: build the app, then log as the SMS turn does.
SCRIPT = f"""
import logging
from bot.main import create_app
from bot.privacy import mask
create_app()
logging.getLogger("bot.sms").info("%s opted out by SMS", mask("{PHONE}"))
logging.getLogger("channels.sms.twilio").debug("debug detail")
"""


def run_gateway_process(tmp_path: Path, level: str) -> subprocess.CompletedProcess[str]:
    url = database_url(tmp_path)
    return run_python("-c", SCRIPT, env={"LOG_LEVEL": level, "DATABASE_URL": url}, timeout=120)


@pytest.mark.parametrize(
    ("level", "info_shown", "debug_shown"),
    [("DEBUG", True, True), ("INFO", True, False), ("WARNING", False, False)],
)
def test_own_loggers_follow_log_level(
    tmp_path: Path, level: str, info_shown: bool, debug_shown: bool
) -> None:
    done = run_gateway_process(tmp_path, level)
    assert done.returncode == 0, done.stderr
    assert ("INFO bot.sms: " in done.stderr and "opted out by SMS" in done.stderr) is info_shown
    assert ("DEBUG channels.sms.twilio: debug detail" in done.stderr) is debug_shown
    assert PHONE not in done.stderr and PHONE[1:] not in done.stderr


def test_unknown_log_level_is_refused(tmp_path: Path) -> None:
    done = run_gateway_process(tmp_path, "verbose")
    assert done.returncode != 0
    assert "log_level" in done.stderr
