"""SMS over Twilio: signed webhooks in, the twilio 9 async client out.

Inbound: ``POST /channels/sms/twilio`` checks ``X-Twilio-Signature`` over the public URL
Twilio called (``PUBLIC_BASE_URL`` + path), stores the message (a ``MessageSid`` seen
before is answered once), answers empty TwiML at once and processes the message in the
background, so a slow turn never meets Twilio's 15 s timeout.
Outbound: the outbox calls :class:`TwilioSender`; ``StatusCallback`` reports land on
``POST /channels/sms/twilio/status``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request, Response
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from bot.db.models import DeliveryStatus
from bot.privacy import mask
from bot.settings import Settings
from channels.base import Channel, DeliveryError, IncomingMessage, OutputChannel
from channels.limits import storable
from channels.sms.phone import InvalidPhoneNumberError, to_e164

logger = logging.getLogger(__name__)

FORM_URLENCODED = "application/x-www-form-urlencoded"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
UNSUBSCRIBED = 21610  # "Attempt to send to unsubscribed recipient"
# Delivery errors worth another try (carrier congestion, unknown transient failures).
RETRIABLE_DELIVERY_ERRORS = frozenset({"30001", "30008", "30009", "30010"})
DELIVERY_STATUSES = {
    "accepted": DeliveryStatus.ACCEPTED,
    "scheduled": DeliveryStatus.ACCEPTED,
    "queued": DeliveryStatus.ACCEPTED,
    "sending": DeliveryStatus.ACCEPTED,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.FAILED,
}
MAX_MEDIA = 10  # Twilio attaches at most ten media to one message
MAX_SID_CHARS = 128  # what the transcript keeps of a provider id (Twilio's are 34)
MAX_ERROR_CODE_CHARS = 16
_MEDIA_URL = re.compile(r"MediaUrl\d+")


def _form(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """The OpenAPI of a Twilio webhook: its form (what Twilio sends; more is ignored) and
    the signature header (read from the request, so FastAPI cannot document it)."""
    fields = {name: {"type": "string", **spec} for name, spec in properties.items()}
    schema = {"type": "object", "properties": fields, "required": required}
    return {
        "parameters": [
            {"name": "X-Twilio-Signature", "in": "header", "required": True,
             "schema": {"type": "string"}, "description": "HMAC-SHA1 over PUBLIC_BASE_URL"},
        ],
        "requestBody": {"required": True, "content": {FORM_URLENCODED: {"schema": schema}}},
    }  # fmt: skip


E164 = {"pattern": r"^\+[1-9][0-9]{6,14}$", "description": "E.164"}
INBOUND_OPENAPI = _form(
    {"MessageSid": {"maxLength": MAX_SID_CHARS}, "AccountSid": {}, "From": E164, "To": E164,
     "Body": {}, "NumMedia": {"pattern": "^(10|[0-9])$", "description": "0 to 10"},
     "MediaUrl0": {}},
    ["MessageSid", "From", "To", "Body"],
)  # fmt: skip
STATUS_OPENAPI = _form(
    {"MessageSid": {}, "MessageStatus": {"enum": list(DELIVERY_STATUSES)}, "ErrorCode": {},
     "To": E164},
    ["MessageSid", "MessageStatus"],
)  # fmt: skip


def media_count(params: Mapping[str, str]) -> int:
    """How many media came with a message: ``NumMedia`` when it is a sane number, else
    the ``MediaUrlN`` parameters counted; never more than :data:`MAX_MEDIA`."""
    declared = params.get("NumMedia", "").strip()
    if declared.isascii() and declared.isdigit() and len(declared) <= 2:
        return min(int(declared), MAX_MEDIA)
    return min(sum(1 for key in params if _MEDIA_URL.fullmatch(key)), MAX_MEDIA)


def public_url(settings: Settings, request: Request) -> str:
    """The URL Twilio signed: our public base plus the path and query it called."""
    base = str(settings.public_base_url).rstrip("/")
    query = f"?{request.url.query}" if request.url.query else ""
    return f"{base}{request.url.path}{query}"


class TwilioSender(OutputChannel):
    def __init__(self, settings: Settings, status_callback: str) -> None:
        self.settings = settings
        self.status_callback = status_callback
        self._http: AsyncTwilioHttpClient | None = None
        self._client: Client | None = None

    async def initialize(self) -> None:
        token = self.settings.twilio_auth_token
        self._http = AsyncTwilioHttpClient(timeout=15)
        self._client = Client(
            self.settings.twilio_account_sid,
            token.get_secret_value() if token else None,
            http_client=self._http,
        )
        if self.settings.twilio_api_base_url is not None:
            self._client.api.base_url = str(self.settings.twilio_api_base_url).rstrip("/")

    async def shutdown(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def _deliver(
        self, recipient: str, body: str, keyboard: Mapping[str, Any] | None = None
    ) -> str:
        assert self._client is not None, "initialize() first"
        sender: dict[str, Any] = (
            {"messaging_service_sid": self.settings.twilio_messaging_service_sid}
            if self.settings.twilio_messaging_service_sid
            else {"from_": self.settings.twilio_from_number}
        )
        try:
            message = await self._client.messages.create_async(
                to=recipient, body=body, status_callback=self.status_callback, **sender
            )
        except TwilioRestException as exc:
            raise DeliveryError(
                f"Twilio {exc.status} error {exc.code}",
                retriable=exc.status >= 500 or exc.status == 429,
                code=str(exc.code) if exc.code else None,
                opted_out=exc.code == UNSUBSCRIBED,
            ) from exc
        return str(message.sid)


class TwilioSmsChannel(Channel):
    name = "sms"
    redacted_keys: ClassVar[frozenset[str]] = frozenset({"From", "To", "Body", "MediaUrl0"})

    @classmethod
    def is_configured(cls, settings: Settings) -> bool:
        return settings.twilio_enabled

    async def initialize(self) -> None:
        token = self.settings.twilio_auth_token
        self.validator = RequestValidator(token.get_secret_value() if token else "")
        base = str(self.settings.public_base_url).rstrip("/")
        self.sender = TwilioSender(self.settings, f"{base}/channels/{self.name}/twilio/status")
        await self.sender.initialize()
        self.services.outbox.register(self.name, self.sender)

    async def shutdown(self) -> None:
        await self.sender.shutdown()

    async def _verified_form(self, request: Request) -> dict[str, str]:
        """The webhook's parameters, or 403 when the signature is missing or wrong."""
        if request.headers.get("content-type", "").startswith(FORM_URLENCODED):
            # What Twilio sends: the standard library reads it several times faster
            # than the general multipart-capable form parser.
            body = (await request.body()).decode("utf-8", errors="replace")
            params = dict(parse_qsl(body, keep_blank_values=True))
        else:
            form = await request.form()
            params = {key: str(value) for key, value in form.items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature or not self.validator.validate(
            public_url(self.settings, request), params, signature
        ):
            logger.warning("refused a Twilio webhook with a bad signature")
            raise HTTPException(403, "invalid signature")
        if len(params.get("MessageSid", "")) > MAX_SID_CHARS:
            raise HTTPException(400, "MessageSid too long")
        # %00 decodes to NUL, which PostgreSQL's text refuses: made storable once signed.
        return {storable(key): storable(value) for key, value in params.items()}

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/twilio", openapi_extra=INBOUND_OPENAPI)
        async def inbound(request: Request) -> Response:
            params = await self._verified_form(request)
            try:
                sender = to_e164(params.get("From", ""), self.settings.default_phone_region)
            except InvalidPhoneNumberError:
                logger.warning(
                    "Twilio webhook from an unusable number %s", mask(params.get("From"))
                )
                return Response(EMPTY_TWIML, media_type="application/xml")
            await self.accept_for_later(
                IncomingMessage(
                    channel=self.name,
                    sender=sender,
                    text=params.get("Body", ""),
                    external_id=params.get("MessageSid") or None,
                    metadata={"media_count": media_count(params)},
                )
            )
            return Response(EMPTY_TWIML, media_type="application/xml")

        @router.post("/twilio/status", openapi_extra=STATUS_OPENAPI)
        async def status_callback(request: Request) -> Response:
            params = await self._verified_form(request)
            status = DELIVERY_STATUSES.get(params.get("MessageStatus", ""))
            if status is None or not params.get("MessageSid"):
                return Response(status_code=204)
            code = params.get("ErrorCode", "")[:MAX_ERROR_CODE_CHARS] or None
            error = (
                DeliveryError(
                    f"Twilio delivery error {code}",
                    retriable=code in RETRIABLE_DELIVERY_ERRORS,
                    code=code,
                    opted_out=code == str(UNSUBSCRIBED),
                )
                if code
                else None
            )
            await self.services.outbox.record_status(self.name, params["MessageSid"], status, error)
            return Response(status_code=204)

        return router
