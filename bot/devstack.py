"""Runs the whole stack locally (``make run``) and for the end-to-end tests.

Trains the Rasa model only when the training data changed (cached by a hash of config,
domain and data), then starts the reference backend, the gateway and ``rasa run`` on
loopback, with SQLite files under ``var/``. Ctrl-C stops them all.

In the production shape (``DATABASE_URL`` on PostgreSQL, ``REDIS_URL``) it starts
``GATEWAY_REPLICAS`` gateways on consecutive ports from 8000 and ``RASA_REPLICAS`` Rasa
servers on consecutive ports from 5005: the gateway's migrations and Rasa's tracker
tables are created once, before any replica starts; Rasa's endpoints file is written
from the environment (``var/endpoints.generated.yml``). See docs/operations.md.
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import yaml
from sqlalchemy.engine import make_url

from bot.settings import PROJECT_ROOT
from channels.limits import MAX_BODY_BYTES

RASA_VENV = Path(os.environ.get("RASA_VENV", PROJECT_ROOT / ".venv-rasa"))
MODELS_DIR = PROJECT_ROOT / "models"
VAR_DIR = PROJECT_ROOT / "var"
TRAINING_INPUTS = ("config.yml", "bot/domain.yml", "bot/data", "intents")
ENDPOINTS_TEMPLATE = PROJECT_ROOT / "endpoints.yml"
# Rasa's SQLTrackerStore opens a QueuePool of SQL_POOL_SIZE + SQL_MAX_OVERFLOW connections
# per process on PostgreSQL (50 + 100 by default in 3.6). Its queries run synchronously on
# Rasa's event loop, one at a time, so a few are plenty (see docs/operations.md).
RASA_SQL_POOL_SIZE = "2"
RASA_SQL_MAX_OVERFLOW = "2"
# Run in Rasa's venv: creates the tracker database if it is missing (PostgreSQL), then
# Rasa's own tables with its own SQLTrackerStore, once, before any Rasa server starts
# (servers started together on an empty database race to create them).
PREPARE_TRACKER = """
import os
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

url = sa.engine.make_url(os.environ["RASA_TRACKER_URL"])
if url.get_backend_name() == "postgresql":
    try:
        sa.create_engine(url).connect().close()
    except OperationalError:
        admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            name = url.database.replace('"', '""')
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
            print(f"civicgate: created the tracker database {url.database}", flush=True)
        admin.dispose()

from rasa.core.tracker_store import SQLTrackerStore

SQLTrackerStore(host=os.environ["RASA_TRACKER_URL"]).engine.dispose()
"""


class StackConfigError(ValueError):
    """A stack that cannot work as asked (e.g. replicas on SQLite)."""


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


def is_postgresql(url: str) -> bool:
    return url.startswith(("postgresql://", "postgresql+", "postgres://"))


def tracker_url_for(database_url: str) -> str:
    """Rasa's tracker store beside the gateway's database: the same PostgreSQL server,
    its own database ``<name>_rasa``, through psycopg2 (Rasa's SQLAlchemy 1.4 driver)."""
    url = make_url("postgresql://" + database_url.split("://", 1)[1])
    return url.set(database=f"{url.database or 'postgres'}_rasa").render_as_string(
        hide_password=False
    )


def redis_lock_store(redis_url: str) -> tuple[dict[str, Any], str | None]:
    """Rasa's ``lock_store`` block for ``redis[s]://[user:password@]host[:port][/db]``,
    and the password, which the block names as ``${CIVICGATE_REDIS_PASSWORD}``."""
    parts = urlsplit(redis_url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise StackConfigError(f"REDIS_URL must be redis://host[:port][/db], not {redis_url!r}")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise StackConfigError(f"REDIS_URL's database must be a number, not {path!r}")
    block: dict[str, Any] = {
        "type": "redis",
        "url": parts.hostname,
        "port": parts.port or 6379,
        "db": int(path or 0),
    }
    if parts.username:
        block["username"] = unquote(parts.username)
    password = unquote(parts.password) if parts.password else None
    if password:
        block["password"] = "${CIVICGATE_REDIS_PASSWORD}"  # noqa: S105 (a reference)
    if parts.scheme == "rediss":
        block["use_ssl"] = True
    return block, password


def _from_environment(name: str) -> str:
    return os.environ.get(name, "").strip()


@dataclass
class StackConfig:
    gateway_port: int = 8000
    rasa_port: int = 5005
    backend_port: int = 8100
    data_dir: Path = VAR_DIR
    action_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    # Rasa's HTTP API (trackers, events) answers only with it (`rasa run --auth-token`).
    rasa_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    backend_api_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    backend_operator_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    backend_webhook_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    # More settings for the gateway (e.g. TWILIO_* pointing at a loopback double).
    gateway_extra_env: dict[str, str] = field(default_factory=dict)
    # uvicorn worker processes: replicas of the stateless gateway on one machine.
    gateway_workers: int = 1
    # Gateway processes on consecutive ports from gateway_port, Rasa servers from
    # rasa_port; gateway i asks Rasa i mod rasa_replicas.
    gateway_replicas: int = 1
    rasa_replicas: int = 1
    # The gateway's database (DATABASE_URL in gateway_extra_env overrides it for the
    # gateway alone); empty: SQLite under data_dir.
    database_url: str = field(default_factory=lambda: _from_environment("DATABASE_URL"))
    # Rasa's lock store; empty: Rasa's in-memory one (one Rasa process only).
    redis_url: str = field(default_factory=lambda: _from_environment("REDIS_URL"))
    # Rasa's tracker store, a full SQLAlchemy URL; empty: beside database_url (PostgreSQL:
    # its own database <name>_rasa on the same server), else SQLite under data_dir.
    tracker_url: str = field(default_factory=lambda: _from_environment("RASA_TRACKER_URL"))
    # Where Rasa sends action and NLG calls; empty: each Rasa to "its" gateway (Rasa j to
    # gateway j mod gateway_replicas). Actions are stateless, so any gateway will do.
    actions_url: str = field(default_factory=lambda: _from_environment("RASA_ACTIONS_URL"))

    @classmethod
    def from_environment(cls) -> StackConfig:
        """``make run``'s stack: replicas from GATEWAY_REPLICAS / RASA_REPLICAS."""
        counts: dict[str, int] = {}
        for name in ("GATEWAY_REPLICAS", "RASA_REPLICAS"):
            value = _from_environment(name) or "1"
            if not value.isdigit():
                raise StackConfigError(f"{name} must be a whole number, not {value!r}")
            counts[name] = int(value)
        return cls(
            gateway_replicas=counts["GATEWAY_REPLICAS"], rasa_replicas=counts["RASA_REPLICAS"]
        )

    def validate(self) -> None:
        """Refuse what cannot work: replicas need shared stores, not per-machine ones."""
        if self.gateway_replicas < 1 or self.rasa_replicas < 1:
            raise StackConfigError("GATEWAY_REPLICAS and RASA_REPLICAS must be at least 1")
        if self.gateway_replicas > 1 and not is_postgresql(self.gateway_database_url):
            raise StackConfigError(
                f"GATEWAY_REPLICAS={self.gateway_replicas} needs DATABASE_URL on PostgreSQL "
                "(postgresql://user@host:port/db): SQLite is a file on one machine, and "
                "replicas must share the gateway's database."
            )
        if self.rasa_replicas > 1:
            if not is_postgresql(self.rasa_tracker_url):
                raise StackConfigError(
                    f"RASA_REPLICAS={self.rasa_replicas} needs a PostgreSQL tracker store "
                    "(DATABASE_URL on PostgreSQL, or RASA_TRACKER_URL): SQLite is a file on "
                    "one machine, and every Rasa server must see every conversation."
                )
            if not self.redis_url:
                raise StackConfigError(
                    f"RASA_REPLICAS={self.rasa_replicas} needs REDIS_URL (redis://host:port/db)"
                    " for Rasa's lock store: the in-memory lock store is per process, so two "
                    "Rasa servers could process one conversation's messages at the same time."
                )
        if self.redis_url:
            redis_lock_store(self.redis_url)  # refuses a malformed URL before anything starts

    @property
    def gateway_database_url(self) -> str:
        return (
            self.gateway_extra_env.get("DATABASE_URL")
            or self.database_url
            or f"sqlite+aiosqlite:///{self.data_dir / 'gateway.db'}"
        )

    @property
    def rasa_tracker_url(self) -> str:
        if self.tracker_url:
            return self.tracker_url
        if is_postgresql(self.database_url):
            return tracker_url_for(self.database_url)
        return f"sqlite:///{self.data_dir / 'rasa_tracker.db'}"

    @property
    def endpoints_path(self) -> Path:
        return self.data_dir / "endpoints.generated.yml"

    @property
    def gateway_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.gateway_port + i}" for i in range(self.gateway_replicas)]

    @property
    def rasa_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.rasa_port + i}" for i in range(self.rasa_replicas)]

    @property
    def gateway_url(self) -> str:
        return self.gateway_urls[0]

    @property
    def rasa_url(self) -> str:
        return self.rasa_urls[0]

    @property
    def backend_url(self) -> str:
        return f"http://127.0.0.1:{self.backend_port}"

    def gateway_env(self, replica: int = 0) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=self.gateway_database_url,
            RASA_URL=self.rasa_urls[replica % self.rasa_replicas],
            ACTION_ENDPOINT_TOKEN=self.action_token,
            RASA_TOKEN=self.rasa_token,
            REFERENCE_BACKEND_URL=self.backend_url,
            REFERENCE_BACKEND_API_KEY=self.backend_api_key,
            BACKEND_WEBHOOK_SECRET=self.backend_webhook_secret,
        )
        env.update(self.gateway_extra_env)
        return env

    def rasa_env(self, replica: int = 0) -> dict[str, str]:
        env = rasa_base_env()
        env.setdefault("SQL_POOL_SIZE", RASA_SQL_POOL_SIZE)
        env.setdefault("SQL_MAX_OVERFLOW", RASA_SQL_MAX_OVERFLOW)
        env.update(
            RASA_TRACKER_URL=self.rasa_tracker_url,
            CIVICGATE_GATEWAY_URL=(
                self.actions_url.rstrip("/") or self.gateway_urls[replica % self.gateway_replicas]
            ),
            CIVICGATE_ACTION_TOKEN=self.action_token,
        )
        if self.redis_url:
            _, password = redis_lock_store(self.redis_url)
            if password:
                env["CIVICGATE_REDIS_PASSWORD"] = password
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


def rasa_endpoints(config: StackConfig) -> dict[str, Any]:
    """endpoints.yml with the tracker store and the lock store this stack uses. Secrets
    stay ``${VARIABLES}`` that Rasa expands from its environment (see rasa_env)."""
    endpoints: dict[str, Any] = yaml.safe_load(ENDPOINTS_TEMPLATE.read_text())
    endpoints["tracker_store"] = {"type": "SQL", "url": "${RASA_TRACKER_URL}"}
    endpoints.pop("lock_store", None)  # Rasa's in-memory lock store: one process only
    if config.redis_url:
        endpoints["lock_store"], _ = redis_lock_store(config.redis_url)
    return endpoints


def write_endpoints(config: StackConfig, path: Path | None = None) -> Path:
    path = path or config.endpoints_path
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Written by bot/devstack.py from endpoints.yml and the environment"
        " (REDIS_URL, DATABASE_URL, RASA_TRACKER_URL): do not edit.\n"
    )
    path.write_text(header + yaml.safe_dump(rasa_endpoints(config), sort_keys=False))
    return path


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"], cwd=PROJECT_ROOT, env=env, check=True
    )


def prepare_tracker_store(config: StackConfig) -> None:
    """Rasa's tracker database and tables, created once with Rasa's own SQLTrackerStore."""
    subprocess.run(  # noqa: S603
        [str(RASA_VENV / "bin" / "python"), "-c", PREPARE_TRACKER],
        cwd=PROJECT_ROOT,
        env=config.rasa_env(),
        check=True,
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


def wait_until(
    url: str,
    timeout: float,
    process: subprocess.Popen[bytes] | Sequence[subprocess.Popen[bytes]] | None = None,
    fallback: str | None = None,
) -> None:
    """Until ``url`` answers 200; ``fallback`` is asked instead while ``url`` is 404."""
    watched = (
        [] if process is None else [process] if isinstance(process, subprocess.Popen) else process
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for watched_process in watched:
            if watched_process.poll() is not None:
                raise RuntimeError(
                    f"process {watched_process.pid} (waited for by {url}) exited with "
                    f"{watched_process.returncode}"
                )
        with contextlib.suppress(httpx.HTTPError):
            status = httpx.get(url, timeout=2).status_code
            if status == 404 and fallback is not None:
                status = httpx.get(fallback, timeout=2).status_code
            if status == 200:
                return
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not become ready in {timeout:.0f}s")


def wait_for_gateway(
    url: str, timeout: float, processes: Sequence[subprocess.Popen[bytes]] = ()
) -> None:
    """The gateway's readiness (``/readyz``, or ``/healthz`` where there is no /readyz)."""
    wait_until(f"{url}/readyz", timeout, processes, fallback=f"{url}/healthz")


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
    """Reference backend, gateways and Rasa servers, started and ready; stopped on exit.

    In this order: the gateway's migrations (once), Rasa's tracker tables (once, on
    PostgreSQL), then every process; ready when each Rasa and each gateway answers."""
    config.validate()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    endpoints = write_endpoints(config)
    migrate(config.gateway_env())
    if is_postgresql(config.rasa_tracker_url):
        prepare_tracker_store(config)
    log = (lambda name: logs / f"{name}.log") if logs else (lambda name: None)
    processes: list[subprocess.Popen[bytes]] = []
    gateways: list[subprocess.Popen[bytes]] = []
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
        for replica in range(config.gateway_replicas):
            name = "gateway" if replica == 0 else f"gateway-{replica}"
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
                    str(config.gateway_port + replica),
                    "--no-access-log",
                    # A websocket frame is bounded like a request body (uvicorn's 16 MiB
                    # default would be read whole before the channel can refuse it).
                    "--ws-max-size",
                    str(MAX_BODY_BYTES),
                    *(
                        ["--workers", str(config.gateway_workers)]
                        if config.gateway_workers > 1
                        else []
                    ),
                ],
                config.gateway_env(replica),
                log(name),
            )
            gateways.append(gateway)
            processes.append(gateway)
        rasas: list[subprocess.Popen[bytes]] = []
        for replica in range(config.rasa_replicas):
            name = "rasa" if replica == 0 else f"rasa-{replica}"
            rasa = _spawn(
                rasa_command(
                    "run",
                    "--enable-api",
                    "--auth-token",
                    config.rasa_token,
                    "-i",
                    "127.0.0.1",
                    "-p",
                    str(config.rasa_port + replica),
                    "-m",
                    str(model),
                    "--endpoints",
                    str(endpoints),
                    "--credentials",
                    "credentials.yml",
                ),
                config.rasa_env(replica),
                log(name),
            )
            rasas.append(rasa)
            processes.append(rasa)
        wait_until(f"{config.backend_url}/healthz", 30, backend)
        for rasa_url, rasa in zip(config.rasa_urls, rasas, strict=True):
            wait_until(
                f"{rasa_url}/status?token={config.rasa_token}", 180 * config.rasa_replicas, rasa
            )
        for gateway_url, gateway in zip(config.gateway_urls, gateways, strict=True):
            wait_for_gateway(gateway_url, 60, [gateway])
        yield config
    finally:
        # Gateways first: on SIGTERM they finish the turns in flight, which need Rasa and
        # the backend; then the others.
        stop(gateways)
        stop(processes)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run civicgate locally.")
    parser.add_argument("--train-only", action="store_true", help="train (if needed) and exit")
    parser.add_argument(
        "--write-endpoints",
        metavar="PATH",
        type=Path,
        help="write Rasa's endpoints file for this environment (REDIS_URL...) and exit",
    )
    args = parser.parse_args()
    if args.train_only:
        ensure_model()
        return
    try:
        config = StackConfig.from_environment()
        config.validate()
    except StackConfigError as error:
        sys.exit(f"civicgate: {error}")
    if args.write_endpoints:
        print(write_endpoints(config, args.write_endpoints))
        return
    model = ensure_model()
    print(
        f"civicgate: starting the reference backend, {config.gateway_replicas} gateway(s) and "
        f"{config.rasa_replicas} Rasa server(s)...",
        flush=True,
    )
    # Ctrl-C (SIGINT) and SIGTERM stop the stack, also when started with SIGINT ignored
    # (a background job of a script, nohup).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        with running_stack(config, model):
            gateways = "\n".join(
                f"  Gateway:   {url}/ (Rasa {config.rasa_urls[i % config.rasa_replicas]})"
                for i, url in enumerate(config.gateway_urls)
            )
            print(
                f"\ncivicgate is ready.\n{gateways}\n"
                f"  Web chat:  {config.gateway_url}/\n"
                f"  Ready:     {config.gateway_url}/readyz (liveness: /healthz)\n"
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
