"""Settings from the environment (pydantic-settings), refusing placeholder secrets in production."""

from __future__ import annotations

import enum
import re
from datetime import date, time
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.office_hours import OfficeHours

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TELEGRAM_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
PLACEHOLDER_SECRETS = frozenset({"", "changethis", "changeme", "secret", "dev-action-token"})


class Environment(enum.StrEnum):
    LOCAL = "local"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_ignore_empty=True, extra="ignore")

    environment: Environment = Environment.LOCAL
    database_url: str = f"sqlite+aiosqlite:///{PROJECT_ROOT / 'var' / 'gateway.db'}"
    # PostgreSQL connections per gateway process: kept open, and opened beyond under load.
    database_pool_size: Annotated[int, Field(ge=1)] = 5
    database_max_overflow: Annotated[int, Field(ge=0)] = 10
    rasa_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:5005")
    rasa_token: SecretStr | None = None
    rasa_timeout_seconds: float = 20.0
    # Rasa calls the action endpoint and the NLG endpoint with this bearer token.
    action_endpoint_token: SecretStr = SecretStr("dev-action-token")
    catalogue_path: Path = PROJECT_ROOT / "service_connectors" / "catalogue.yml"
    reference_backend_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8100")
    reference_backend_api_key: SecretStr = SecretStr("dev-backend-key")
    connector_timeout_seconds: float = 10.0
    # Open311 GeoReport v2 (a city's service requests): the services listed go there.
    open311_base_url: AnyHttpUrl | None = None
    open311_api_key: SecretStr | None = None
    open311_jurisdiction_id: str | None = None
    open311_services: tuple[str, ...] = ("pothole", "streetlight")
    # Our service code → the city's service_code (JSON in the environment).
    open311_service_codes: dict[str, str] = Field(default_factory=dict)
    # The city server's dialect (servers written from the spec differ): the form field of a
    # street address ("address" for servers that read that), how attributes are named
    # ({code} for the code), whether it offers GET /requests.json (the idempotency search;
    # false: never called), and how close to creation an updated_datetime is only the
    # server stamping the new request, not a change.
    open311_address_field: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\[\]-]{1,64}$")] = (
        "address_string"
    )
    open311_attribute_format: Annotated[str, Field(pattern=r"\{code\}")] = "attribute[{code}]"
    open311_request_search: bool = True
    open311_creation_window_seconds: Annotated[float, Field(ge=0)] = 2.0
    # Department APIs described in YAML (service_connectors/departments/), no Python.
    department_specs: tuple[Path, ...] = ()
    # A backend failing this many times in a row is left alone for the cooldown.
    connector_breaker_threshold: Annotated[int, Field(ge=1)] = 5
    connector_breaker_cooldown_seconds: Annotated[float, Field(gt=0)] = 30.0
    default_language: str = "en"
    supported_languages: tuple[str, ...] = ("en", "fr", "ru")
    # Longer messages are stored whole but not sent to the NLU (a polite reply instead).
    max_message_chars: Annotated[int, Field(ge=16)] = 1000
    # Wrong second-factor answers allowed per application and identity, per day.
    max_verification_attempts: Annotated[int, Field(ge=1)] = 3
    # Wrong answers allowed per application from all identities and channels together,
    # per day (then only the applicant sees its status); after each one, the next answer
    # to that application waits VERIFICATION_DELAY_SECONDS, doubled per failure (1 hour
    # at most); staff are alerted (audit log, metric) at VERIFICATION_ALERT_FAILURES.
    max_verification_attempts_per_application: Annotated[int, Field(ge=1)] = 10
    verification_delay_seconds: Annotated[float, Field(ge=0)] = 30.0
    verification_alert_failures: Annotated[int, Field(ge=1)] = 5
    # Keys the HMAC that turns phone numbers and chat ids into log tags: tags stay
    # stable while it does, and cannot be turned back without it.
    log_mask_key: SecretStr = SecretStr("dev-log-mask-key")
    # Signs the web chat's session cookie (only the server issues browser identities).
    webchat_cookie_secret: SecretStr = SecretStr("dev-webchat-cookie-secret")
    # Origins allowed to open the web chat's websocket (default: PUBLIC_BASE_URL's, or
    # the request's own host when that is not set).
    webchat_allowed_origins: tuple[str, ...] = ()
    # Shown while the call-centre handoff is not built; hours are a translatable msgid.
    call_centre_phone: str = "311"
    call_centre_hours: str = "Monday to Friday, 8 am to 6 pm"
    # The gateway's own loggers (bot, channels, service_connectors); uvicorn has its own.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Who the bot says it is in HELP replies (a translatable msgid).
    organisation_name: str = "City services"

    # --- SMS over Twilio: enabled when the account SID, token and a sender are set ----
    # The URL Twilio calls, as Twilio sees it (behind proxies): webhook signatures are
    # computed over it, and status callbacks are addressed to it.
    public_base_url: AnyHttpUrl | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    # Overrides Twilio's API host (tests and local runs talk to a loopback double).
    twilio_api_base_url: AnyHttpUrl | None = None
    # Region assumed for phone numbers written without a country code.
    default_phone_region: str = "CA"
    # One reply turn goes out as one concatenated SMS of at most this many segments;
    # longer replies are paged ("Reply MORE").
    sms_segment_budget: Annotated[int, Field(ge=1, le=10)] = 3
    # Per-number flood protection: at most this many messages per window are answered.
    sms_rate_limit_messages: Annotated[int, Field(ge=1)] = 20
    sms_rate_limit_window_seconds: Annotated[int, Field(ge=1)] = 60
    sms_max_send_attempts: Annotated[int, Field(ge=1)] = 5
    # First retry delay of a failed send; doubles each time, up to 10 minutes.
    delivery_retry_base_seconds: Annotated[float, Field(gt=0)] = 5.0
    # How often the background worker sweeps the outbox and stalled conversations.
    worker_interval_seconds: Annotated[float, Field(gt=0)] = 2.0

    # --- Applications and notifications -------------------------------------------------
    # First retry of a submission the backend could not take; doubles up to 10 minutes.
    submission_retry_base_seconds: Annotated[float, Field(gt=0)] = 30.0
    # An application the backend has not taken after this many attempts, or this many
    # hours after the first, stops being retried: stage needs_attention (a person looks).
    # Per connector: SUBMISSION_MAX_ATTEMPTS_BY_CONNECTOR='{"open311": 20}' (JSON), the same
    # for hours.
    submission_max_attempts: Annotated[int, Field(ge=1)] = 12
    submission_max_hours: Annotated[float, Field(gt=0)] = 72.0
    submission_max_attempts_by_connector: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict
    )
    submission_max_hours_by_connector: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict
    )
    # The same server error (status 500 and the same body) this many times in a row is a
    # refusal: the server chokes on this application, retrying will not help.
    backend_same_error_refuses: Annotated[int, Field(ge=1)] = 3
    # An application a backend refused or never took (stage needs_attention) waiting for
    # a supervisor longer than this is logged at ERROR, once (also in the audit log).
    needs_attention_alert_minutes: Annotated[float, Field(gt=0)] = 60.0
    # Polled backends (Open311, REST): how often an open application's status is read.
    status_poll_interval_seconds: Annotated[float, Field(gt=0)] = 900.0
    # Shared with the reference backend: its stage webhooks are signed with it (HMAC).
    backend_webhook_secret: SecretStr | None = None
    # No proactive message at night, in the citizens' time zone; held ones go out after.
    quiet_hours_start: time = time(21, 0)
    quiet_hours_end: time = time(8, 0)
    timezone: str = "America/Toronto"
    # When the call centre takes live chats, in TIMEZONE: e.g. "mon-fri 08:00-18:00;
    # sat 09:00-12:00", or "mon-sun 00:00-24:00" for always.
    office_hours: str = "mon-fri 08:00-18:00"
    # Dates the call centre is closed (a JSON list of ISO dates in the environment).
    holidays: tuple[date, ...] = ()
    # Handoffs to people: the team a service's requests go to (JSON: service code → team),
    # else the default team; how often a waiting citizen is told their place in the queue
    # (SMS costs money); how many call-back times are offered.
    handoff_default_team: str = "general"
    handoff_teams: dict[str, str] = Field(default_factory=dict)
    handoff_update_interval_seconds: Annotated[float, Field(gt=0)] = 300.0
    handoff_callback_slots: Annotated[int, Field(ge=1, le=9)] = 4

    # --- Telegram (python-telegram-bot): enabled when the bot token is set ------------
    telegram_bot_token: SecretStr | None = None
    # Telegram sends it in X-Telegram-Bot-Api-Secret-Token; 1-256 of A-Z a-z 0-9 _ -.
    telegram_webhook_secret: SecretStr | None = None
    # Overrides Telegram's API host (PTB's base_url; tests talk to a loopback double).
    telegram_api_base_url: AnyHttpUrl | None = None

    @property
    def telegram_enabled(self) -> bool:
        return self.telegram_bot_token is not None

    @property
    def twilio_enabled(self) -> bool:
        return bool(
            self.twilio_account_sid
            and self.twilio_auth_token
            and (self.twilio_from_number or self.twilio_messaging_service_sid)
        )

    @property
    def webchat_origins(self) -> frozenset[str]:
        """``scheme://host[:port]`` of each allowed web-chat origin (empty: same host)."""
        listed = self.webchat_allowed_origins or (
            (str(self.public_base_url),) if self.public_base_url else ()
        )
        return frozenset(origin_of(url) for url in listed)

    @field_validator("office_hours")
    @classmethod
    def _check_office_hours(cls, value: str) -> str:
        OfficeHours.parse(value, (), "UTC")  # a bad spec stops start-up, naming the bad part
        return value

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Self:
        if self.environment is Environment.PRODUCTION:
            if self.rasa_token is None:
                raise ValueError("RASA_TOKEN must be set in production (rasa run --auth-token)")
            for name in (
                "action_endpoint_token",
                "reference_backend_api_key",
                "rasa_token",
                "log_mask_key",
                "webchat_cookie_secret",
            ):
                value: SecretStr = getattr(self, name)
                if (
                    value.get_secret_value().lower() in PLACEHOLDER_SECRETS
                    or value.get_secret_value().startswith("dev-")
                ):
                    raise ValueError(f"{name.upper()} must be set to a real secret in production")
        if self.telegram_enabled:
            secret = self.telegram_webhook_secret
            if secret is None or not TELEGRAM_SECRET.fullmatch(secret.get_secret_value()):
                raise ValueError(
                    "TELEGRAM_WEBHOOK_SECRET is required with Telegram: 1-256 of A-Z a-z 0-9 _ -"
                )
        if self.twilio_enabled and self.public_base_url is None:
            raise ValueError("PUBLIC_BASE_URL is required with Twilio: signatures are over it")
        return self


def origin_of(url: str) -> str:
    """A URL's origin as browsers send it in ``Origin``: ``https://chat.example.org``."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.netloc or "").lower()
    default = {"https": ":443", "http": ":80"}.get(scheme)
    if default and host.endswith(default):
        host = host.removesuffix(default)
    return f"{scheme}://{host}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
