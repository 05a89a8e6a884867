"""Runs the whole stack locally (``make run``) and for the end-to-end tests.

Trains the Rasa model only when the training data changed (cached by a hash of config,
domain and data), then starts the reference backend, the gateway and ``rasa run`` on
loopback, with SQLite files under ``var/``. Ctrl-C stops them all.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bot.settings import PROJECT_ROOT

RASA_VENV = Path(os.environ.get("RASA_VENV", PROJECT_ROOT / ".venv-rasa"))
MODELS_DIR = PROJECT_ROOT / "models"
VAR_DIR = PROJECT_ROOT / "var"
TRAINING_INPUTS = ("config.yml", "bot/domain.yml", "bot/data", "intents")


def training_files() -> list[Path]:
    files: list[Path] = []
    for name in TRAINING_INPUTS:
        path = PROJECT_ROOT / name
        files.extend(sorted(path.rglob("*.yml")) if path.is_dir() else [path])
    return files


def model_hash() -> str:
    digest = hashlib.sha256()
    for path in training_files():
        digest.update(str(path.relative_to(PROJECT_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def rasa_command(*args: str) -> list[str]:
    return [str(RASA_VENV / "bin" / "rasa"), *args]


def rasa_base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RASA_TELEMETRY_ENABLED="false",
        TF_CPP_MIN_LOG_LEVEL="2",
        TF_INTER_OP_PARALLELISM_THREADS="1",
        TF_INTRA_OP_PARALLELISM_THREADS="2",
        RASA_MAX_CACHE_SIZE="0",
        SQLALCHEMY_SILENCE_UBER_WARNING="1",
    )
    return env


def ensure_model() -> Path:
    """The model for the current training data, training it first if needed."""
    MODELS_DIR.mkdir(exist_ok=True)
    model = MODELS_DIR / f"{model_hash()}.tar.gz"
    with (MODELS_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one trainer at a time (parallel test runs)
        if model.exists():
            print(f"civicgate: using cached model {model.name}", flush=True)
            return model
        print("civicgate: training data changed, training the Rasa model...", flush=True)
        command = rasa_command(
            "train",
            "--config",
            "config.yml",
            "--domain",
            "bot/domain.yml",
            "--data",
            "bot/data",
            "intents",
            "--out",
            str(MODELS_DIR),
            "--fixed-model-name",
            model.name.removesuffix(".tar.gz"),
        )
        subprocess.run(command, cwd=PROJECT_ROOT, env=rasa_base_env(), check=True)  # noqa: S603
    return model


@dataclass
class StackConfig:
    gateway_port: int = 8000
    rasa_port: int = 5005
    backend_port: int = 8100
    data_dir: Path = VAR_DIR
    action_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    backend_api_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    backend_operator_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    backend_webhook_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    # More settings for the gateway (e.g. TWILIO_* pointing at a loopback double).
    gateway_extra_env: dict[str, str] = field(default_factory=dict)
    # uvicorn worker processes: replicas of the stateless gateway on one machine.
    gateway_workers: int = 1

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def rasa_url(self) -> str:
        return f"http://127.0.0.1:{self.rasa_port}"

    @property
    def backend_url(self) -> str:
        return f"http://127.0.0.1:{self.backend_port}"

    def gateway_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("DATABASE_URL", f"sqlite+aiosqlite:///{self.data_dir / 'gateway.db'}")
        env.update(
            RASA_URL=self.rasa_url,
            ACTION_ENDPOINT_TOKEN=self.action_token,
            REFERENCE_BACKEND_URL=self.backend_url,
            REFERENCE_BACKEND_API_KEY=self.backend_api_key,
            BACKEND_WEBHOOK_SECRET=self.backend_webhook_secret,
        )
        env.update(self.gateway_extra_env)
        return env

    def rasa_env(self) -> dict[str, str]:
        env = rasa_base_env()
        env.setdefault("RASA_TRACKER_DIALECT", "sqlite")
        env.setdefault("RASA_TRACKER_URL", f"sqlite:///{self.data_dir / 'rasa_tracker.db'}")
        env.setdefault("RASA_TRACKER_DB", str(self.data_dir / "rasa_tracker.db"))
        env.update(CIVICGATE_GATEWAY_URL=self.gateway_url, CIVICGATE_ACTION_TOKEN=self.action_token)
        return env

    def backend_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            REFERENCE_BACKEND_API_KEY=self.backend_api_key,
            REFERENCE_BACKEND_OPERATOR_TOKEN=self.backend_operator_token,
            REFERENCE_BACKEND_WEBHOOK_URL=f"{self.gateway_url}/connectors/reference/events",
            BACKEND_WEBHOOK_SECRET=self.backend_webhook_secret,
        )
        return env


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"], cwd=PROJECT_ROOT, env=env, check=True
    )


def _spawn(command: list[str], env: dict[str, str], log: Path | None) -> subprocess.Popen[bytes]:
    output = log.open("ab") if log else None
    try:
        return subprocess.Popen(  # noqa: S603
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            start_new_session=True,
        )
    finally:
        if output is not None:
            output.close()  # the child has its own copy of the descriptor


def wait_until(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not become ready in {timeout:.0f}s")


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def running_stack(
    config: StackConfig, model: Path, logs: Path | None = None
) -> Iterator[StackConfig]:
    """Reference backend, gateway and Rasa, started and ready; stopped on exit."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    gateway_env = config.gateway_env()
    migrate(gateway_env)
    log = (lambda name: logs / f"{name}.log") if logs else (lambda name: None)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        backend = _spawn(
            [
                sys.executable,
                "-m",
                "service_connectors.reference_backend",
                "--host",
                "127.0.0.1",
                "--port",
                str(config.backend_port),
                "--database",
                str(config.data_dir / "reference_backend.db"),
            ],
            config.backend_env(),
            log("backend"),
        )
        processes.append(backend)
        gateway = _spawn(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "bot.main:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(config.gateway_port),
                "--no-access-log",
                *(["--workers", str(config.gateway_workers)] if config.gateway_workers > 1 else []),
            ],
            gateway_env,
            log("gateway"),
        )
        processes.append(gateway)
        rasa = _spawn(
            rasa_command(
                "run",
                "--enable-api",
                "-i",
                "127.0.0.1",
                "-p",
                str(config.rasa_port),
                "-m",
                str(model),
                "--endpoints",
                "endpoints.yml",
                "--credentials",
                "credentials.yml",
            ),
            config.rasa_env(),
            log("rasa"),
        )
        processes.append(rasa)
        wait_until(f"{config.backend_url}/healthz", 30, backend)
        wait_until(f"{config.gateway_url}/healthz", 180, rasa)
        yield config
    finally:
        stop(processes)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run civicgate locally.")
    parser.add_argument("--train-only", action="store_true", help="train (if needed) and exit")
    args = parser.parse_args()
    model = ensure_model()
    if args.train_only:
        return
    config = StackConfig()
    print("civicgate: starting the reference backend, the gateway and Rasa...", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        with running_stack(config, model):
            print(
                f"\ncivicgate is ready.\n  Web chat:  {config.gateway_url}/\n"
                f"  Health:    {config.gateway_url}/healthz\n"
                f"  Backend operator token (X-Operator-Token): {config.backend_operator_token}\n"
                "Press Ctrl-C to stop.",
                flush=True,
            )
            while True:
                time.sleep(1)
    except KeyboardInterrupt:
        print("\ncivicgate: stopping...", flush=True)


if __name__ == "__main__":
    main()
