"""``create_app``: one reference backend over one database, catalogue and pair of secrets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import create_engine

from service_connectors.catalogue import DEFAULT_CATALOGUE_PATH, load_catalogue
from service_connectors.reference_backend.dependencies import BackendContext
from service_connectors.reference_backend.routes import InvalidFormError, gateway, operator, public
from service_connectors.reference_backend.schemas import ErrorList, FieldError
from service_connectors.reference_backend.store import ApplicationStore


def create_app(
    database_url: str,
    api_key: str,
    operator_token: str,
    catalogue_path: Path | str = DEFAULT_CATALOGUE_PATH,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> FastAPI:
    """The backend app; tables are created at startup (a stand-in needs no migrations)."""
    if not api_key or not operator_token:
        raise ValueError("the API key and the operator token must not be empty")
    if api_key == operator_token:
        raise ValueError("the operator token must differ from the gateway's API key")
    engine = create_engine(database_url)
    store = ApplicationStore(engine)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store.create_tables()
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(title="civicgate reference backend", lifespan=lifespan)
    app.state.backend = BackendContext(
        store=store,
        catalogue=load_catalogue(catalogue_path),
        api_key=api_key,
        operator_token=operator_token,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
    )
    for router in (public, gateway, operator):
        app.include_router(router)

    @app.exception_handler(InvalidFormError)
    async def _form_rejected(_: Request, exc: InvalidFormError) -> JSONResponse:
        return _errors_response(exc.errors)

    @app.exception_handler(RequestValidationError)
    async def _malformed(_: Request, exc: RequestValidationError) -> JSONResponse:
        # One error shape for every 422, so the gateway parses a single format.
        return _errors_response(
            [FieldError(field=_field_name(e["loc"]), message=e["msg"]) for e in exc.errors()]
        )

    return app


def _field_name(location: tuple[str | int, ...]) -> str:
    """``("body", "fields", "x")`` → ``x``; ``("body", "service_code")`` → ``service_code``."""
    path = [str(part) for part in location[1:]] or [str(part) for part in location]
    if path[:1] == ["fields"] and len(path) == 2:
        return path[1]
    return ".".join(path)


def _errors_response(errors: list[FieldError]) -> JSONResponse:
    return JSONResponse(
        ErrorList(errors=errors).model_dump(), status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
    )
