"""``python -m service_connectors.reference_backend``: run the backend with uvicorn.

Secrets come from ``REFERENCE_BACKEND_API_KEY`` and ``REFERENCE_BACKEND_OPERATOR_TOKEN``;
``--dev`` supplies the well-known development values the gateway also defaults to, so a
forgotten variable never silently starts a backend with guessable credentials.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from service_connectors.catalogue import DEFAULT_CATALOGUE_PATH
from service_connectors.reference_backend.app import create_app

API_KEY_ENV = "REFERENCE_BACKEND_API_KEY"
OPERATOR_TOKEN_ENV = "REFERENCE_BACKEND_OPERATOR_TOKEN"  # noqa: S105 (a variable's name)
DEV_SECRETS: Mapping[str, str] = {  # public on purpose: development only
    API_KEY_ENV: "dev-backend-key",  # matches the gateway's default in bot/settings.py
    OPERATOR_TOKEN_ENV: "dev-operator-token",
}

log = logging.getLogger("service_connectors.reference_backend")


@dataclass(frozen=True, slots=True)
class Secrets:
    api_key: str
    operator_token: str


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m service_connectors.reference_backend", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--database", type=Path, default=Path("var/reference_backend.db"))
    parser.add_argument("--catalogue", type=Path, default=DEFAULT_CATALOGUE_PATH)
    parser.add_argument("--dev", action="store_true", help="allow the development secrets")
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def resolve_secrets(environ: Mapping[str, str], dev: bool) -> Secrets:
    """Secrets from ``environ``; the development values only if ``dev``, else SystemExit."""
    values = {name: environ.get(name) or (DEV_SECRETS[name] if dev else "") for name in DEV_SECRETS}
    if missing := [name for name, value in values.items() if not value]:
        raise SystemExit(f"set {' and '.join(missing)} (or pass --dev for development secrets)")
    return Secrets(api_key=values[API_KEY_ENV], operator_token=values[OPERATOR_TOKEN_ENV])


def sqlite_url(database: Path) -> str:
    """The SQLAlchemy URL for a SQLite file, creating its directory."""
    database.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{database.resolve()}"


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    secrets = resolve_secrets(os.environ, args.dev)
    app = create_app(
        sqlite_url(args.database),
        secrets.api_key,
        secrets.operator_token,
        args.catalogue,
        # Stage changes are pushed to the gateway when both are set.
        webhook_url=os.environ.get("REFERENCE_BACKEND_WEBHOOK_URL") or None,
        webhook_secret=os.environ.get("BACKEND_WEBHOOK_SECRET") or None,
    )
    if args.dev and args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("development secrets on a non-loopback address (%s)", args.host)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
