"""A Python process of the gateway's environment, run from the project root as a
deployment would run it, with its output captured."""

from __future__ import annotations

import os
import subprocess
import sys

from bot.settings import PROJECT_ROOT


def run_python(
    *args: str, env: dict[str, str], stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python *args`` with ``env`` over this environment; never raises on failure."""
    return subprocess.run(
        [sys.executable, *args],
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=timeout,
        check=False,
    )
