"""A Twilio REST API double on loopback, spoken to by the real twilio client.

It serves ``POST /2010-04-01/Accounts/{sid}/Messages.json`` like Twilio (HTTP Basic auth
with the account SID and token, form-encoded body, a JSON message resource back), records
what would have been sent, and can be told to fail: a 5xx, or 21610 for a number that
unsubscribed at the carrier. Helpers sign webhooks as Twilio does.
"""

from __future__ import annotations

import base64
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-twilio-auth-token"
FROM_NUMBER = "+15005550006"


@dataclass
class TwilioDouble:
    sent: list[dict[str, str]] = field(default_factory=list)
    unsubscribed: set[str] = field(default_factory=set)
    failures: list[int] = field(default_factory=list)  # HTTP statuses for the next sends
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/2010-04-01/Accounts/{account}/Messages.json")
        async def create_message(account: str, request: Request) -> JSONResponse:
            expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
            if (
                account != ACCOUNT_SID
                or request.headers.get("authorization") != f"Basic {expected}"
            ):
                return _error(401, 20003, "Authenticate")
            form = {key: str(value) for key, value in (await request.form()).items()}
            with self._lock:
                if self.failures:
                    return _error(self.failures.pop(0), 20500, "Internal Server Error")
                if form.get("To") in self.unsubscribed:
                    return _error(400, 21610, "Attempt to send to unsubscribed recipient")
                sid = f"SM{next(self._ids):032x}"
                self.sent.append({**form, "Sid": sid})
            return JSONResponse(
                {"sid": sid, "account_sid": account, "status": "queued", "to": form.get("To"),
                 "from": form.get("From"), "body": form.get("Body"), "num_segments": "1"},
                status_code=201,
            )  # fmt: skip

        return app

    def bodies_to(self, number: str) -> list[str]:
        with self._lock:
            return [m["Body"] for m in self.sent if m.get("To") == number]

    def wait_for(self, number: str, count: int, timeout: float = 30.0) -> list[str]:
        """The bodies sent to ``number`` once there are at least ``count`` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            bodies = self.bodies_to(number)
            if len(bodies) >= count:
                return bodies
            time.sleep(0.02)
        raise AssertionError(f"{count} SMS to {number} expected, got {self.bodies_to(number)}")


def _error(status: int, code: int, message: str) -> JSONResponse:
    body = {"code": code, "message": message, "more_info": "", "status": status}
    return JSONResponse(body, status_code=status)


def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, params))


@dataclass
class SmsPhone:
    """A citizen's phone: texts the gateway's webhook signed as Twilio would."""

    gateway_url: str
    public_base_url: str
    number: str
    twilio: TwilioDouble
    _sids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def post(self, body: str, sid: str | None = None, **extra: str) -> httpx.Response:
        params = {
            "MessageSid": sid or f"SMin{self.number[1:]}{next(self._sids):08d}{time.time_ns()}",
            "AccountSid": ACCOUNT_SID, "From": self.number, "To": FROM_NUMBER,
            "Body": body, "NumMedia": "0", **extra,
        }  # fmt: skip
        path = "/channels/sms/twilio"
        signature = sign(self.public_base_url + path, params)
        return httpx.post(
            self.gateway_url + path,
            content=urlencode(params),
            headers={"X-Twilio-Signature": signature,
                     "Content-Type": "application/x-www-form-urlencoded"},
            timeout=30,
        )  # fmt: skip

    def text(self, body: str, timeout: float = 30.0) -> str:
        """Send ``body`` and wait for the one SMS that answers it."""
        before = len(self.twilio.bodies_to(self.number))
        response = self.post(body)
        assert response.status_code == 200, response.text
        return self.twilio.wait_for(self.number, before + 1, timeout)[before]


def twilio_settings(twilio_url: str, public_base_url: str) -> dict[str, Any]:
    return {
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_from_number": FROM_NUMBER,
        "twilio_api_base_url": twilio_url,
        "public_base_url": public_base_url,
        "worker_interval_seconds": 0.2,
    }
