"""The call-centre console: staff accounts, the queue, conversations taken over from the bot."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles


def install(app: FastAPI) -> None:
    """Mount the console at ``/console``: login, pages, live stream, static files."""
    from bot.console import attention, auth, live, routes
    from bot.console.rendering import STATIC_DIR

    app.include_router(auth.router(), prefix="/console", tags=["console"])
    app.include_router(routes.router(), prefix="/console", tags=["console"])
    app.include_router(live.router(), prefix="/console", tags=["console"])
    app.include_router(attention.router(), prefix="/console", tags=["console"])
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")

    @app.exception_handler(auth.LoginRequired)
    async def login_required(request: Request, _exc: Exception) -> Response:
        html_page = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        if html_page:
            return RedirectResponse("/console/login", status_code=303)
        return JSONResponse({"detail": "sign in first"}, status_code=401)
