"""Filing, reading and advancing applications: the reference backend's domain logic.

Methods are synchronous (FastAPI runs them in its thread pool) and each opens its own
session, so no session or connection ever crosses threads.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from service_connectors.base import Stage
from service_connectors.catalogue import REFERENCE_ALPHABET, Service
from service_connectors.reference_backend.models import Application, Base, StageChange, utc_now

# The first allowed stage is where "advance" without a stage goes: the usual path.
TRANSITIONS: Mapping[Stage, tuple[Stage, ...]] = {
    Stage.RECEIVED: (Stage.IN_REVIEW,),
    Stage.IN_REVIEW: (Stage.APPROVED, Stage.REJECTED),
    Stage.APPROVED: (Stage.READY_FOR_COLLECTION,),
    Stage.REJECTED: (),
    Stage.READY_FOR_COLLECTION: (),
}

REFERENCE_BODY_LENGTH = 6
_MAX_REFERENCE_ATTEMPTS = 8


def new_reference(prefix: str) -> str:
    """``XX-XXXXXX`` from ``secrets``; the body always holds a digit.

    ``find_reference`` accepts a reference typed without its dash only if the body has a
    digit, so a digit-free body (about one in six) could not be typed that way (nor is
    the prompts' example ``BC-XXXXXX`` ever drawn).
    """
    while True:
        body = "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(REFERENCE_BODY_LENGTH))
        if any(ch.isdigit() for ch in body):
            return f"{prefix}-{body}"


class UnknownApplicationError(LookupError):
    """No application has this reference."""


class IdempotencyKeyReusedError(Exception):
    """The key was already used for a different request: refusing beats a wrong receipt."""


class TransitionRefusedError(Exception):
    """The workflow forbids the move, or another change to the application won the race."""

    def __init__(self, current: Stage, requested: Stage | None) -> None:
        allowed = ", ".join(TRANSITIONS[current]) or "none (final stage)"
        target = requested or "the next stage"
        super().__init__(f"cannot move from {current} to {target}; allowed: {allowed}")


@dataclass(frozen=True, slots=True)
class Filed:
    application: Application
    created: bool


def request_fingerprint(service_code: str, fields: Mapping[str, str], language: str) -> str:
    canonical = json.dumps([service_code, dict(fields), language], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


class ApplicationStore:
    def __init__(
        self, engine: Engine, make_reference: Callable[[str], str] = new_reference
    ) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._engine = engine
        self._make_reference = make_reference

    def create_tables(self) -> None:
        Base.metadata.create_all(self._engine)

    def file(
        self, service: Service, fields: Mapping[str, str], language: str, idempotency_key: str
    ) -> Filed:
        """File once per ``idempotency_key``; a repeat gets the application filed first.

        Insert first and let the unique constraint decide, so two concurrent requests with
        one key cannot both create a row; a clash on the reference just draws another.
        """
        fingerprint = request_fingerprint(service.code, fields, language)
        for _ in range(_MAX_REFERENCE_ATTEMPTS):
            try:
                return Filed(
                    self._insert(service, fields, language, idempotency_key, fingerprint), True
                )
            except IntegrityError:
                existing = self._by_idempotency_key(idempotency_key)
                if existing is None:
                    continue  # the reference was taken: draw another
                if existing.request_fingerprint != fingerprint:
                    raise IdempotencyKeyReusedError(idempotency_key) from None
                return Filed(existing, False)
        raise RuntimeError("could not draw an unused reference")

    def get(self, reference: str) -> Application:
        with self._sessions() as session:
            application = session.scalar(
                select(Application).where(Application.reference == reference.upper())
            )
        if application is None:
            raise UnknownApplicationError(reference)
        return application

    def recent(self, limit: int) -> Sequence[Application]:
        with self._sessions() as session:
            newest_first = select(Application).order_by(
                Application.created_at.desc(), Application.id.desc()
            )
            return session.scalars(newest_first.limit(limit)).all()

    def advance(self, reference: str, stage: Stage | None, note: str | None) -> Application:
        """Move to ``stage`` (default: the usual next one) if the workflow allows it."""
        with self._sessions() as session:
            application = session.scalar(
                select(Application).where(Application.reference == reference.upper())
            )
            if application is None:
                raise UnknownApplicationError(reference)
            current = application.stage
            allowed = TRANSITIONS[current]
            target = stage or (allowed[0] if allowed else None)
            if target is None or target not in allowed:
                raise TransitionRefusedError(current, stage)
            now = utc_now()
            application.stage, application.note, application.updated_at = target, note, now
            application.history.append(StageChange(stage=target, at=now, note=note))
            try:
                session.commit()
            except StaleDataError:
                # Someone else moved it between our read and our write.
                raise TransitionRefusedError(current, stage) from None
        return self.get(reference)

    def _insert(
        self,
        service: Service,
        fields: Mapping[str, str],
        language: str,
        idempotency_key: str,
        fingerprint: str,
    ) -> Application:
        now = utc_now()
        application = Application(
            reference=self._make_reference(service.prefix),
            idempotency_key=idempotency_key,
            request_fingerprint=fingerprint,
            service_code=service.code,
            fields=dict(fields),
            language=language,
            stage=Stage.RECEIVED,
            note=None,
            created_at=now,
            updated_at=now,
        )
        application.history.append(StageChange(stage=Stage.RECEIVED, at=now, note=None))
        with self._sessions() as session, session.begin():
            session.add(application)
        return application

    def _by_idempotency_key(self, key: str) -> Application | None:
        with self._sessions() as session:
            return session.scalar(select(Application).where(Application.idempotency_key == key))
