"""A real stack for end-to-end tests: the trained (or cached) model, `rasa run`, the
gateway and the reference backend as separate processes on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.devstack import StackConfig, ensure_model, running_stack
from support.servers import free_port


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackConfig]:
    data_dir = tmp_path_factory.mktemp("stack")
    config = StackConfig(
        gateway_port=free_port(), rasa_port=free_port(), backend_port=free_port(), data_dir=data_dir
    )
    try:
        with running_stack(config, ensure_model(), logs=data_dir):
            yield config
    except Exception:
        for log in sorted(Path(data_dir).glob("*.log")):
            print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-4000:]}")
        raise
