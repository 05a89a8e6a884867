"""``RestConnector``: files applications with any JSON department API described in YAML.

A new department is a description (``departments/*.yml``), not Python: where to post,
how our field names map into its body, where its answers keep the reference, the id and
the status word, and which of its status words mean which :class:`Stage`. The whole
description is validated when loaded (``extra="forbid"``), so a typo fails at startup and
not on a citizen's submission. The secret is only ever *named* (an environment variable).

Errors follow the base class, plus one rule for answers: a body that is not JSON (a
maintenance page) is :class:`BackendUnavailable`; JSON that lacks a configured key or
carries an unmapped status word is :class:`BackendMisconfigured`, because the description
and the department disagree and only an operator can reconcile them.
"""

from __future__ import annotations

import dataclasses
import os
import string
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import quote

import httpx
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from service_connectors.base import (
    ApplicationNotFound,
    BackendMisconfigured,
    BackendTransient,
    ConnectorConfig,
    Receipt,
    RemoteService,
    ServiceConnector,
    Stage,
    StatusReport,
    Submission,
    SubmissionRejected,
    excerpt,
)
from service_connectors.catalogue import Code, Service

DEPARTMENTS_DIR = Path(__file__).with_name("departments")

# ``applicant.name``: object keys joined by dots; a numeric segment indexes a list.
KeyPath = Annotated[str, StringConstraints(pattern=r"^[^.\s]+(\.[^.\s]+)*$")]
UrlPath = Annotated[str, StringConstraints(pattern=r"^/\S*$")]
HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]+$")]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Scalar = str | int | float | bool | None

_DATETIME = TypeAdapter(datetime)
_MISSING = object()


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AuthSpec(_Spec):
    """One header carrying a secret read from ``secret_env`` at ``initialize``."""

    header: HeaderName = "Authorization"
    secret_env: EnvName
    prefix: str = ""


class ServicesSpec(_Spec):
    """Which catalogue services this department files, and its own code for each.

    Without ``path`` the list is taken on trust; with it, ``list_services`` asks the
    department what it offers today and keeps the entries ``codes`` knows.
    """

    codes: dict[Code, str] = Field(min_length=1)
    path: UrlPath | None = None
    list_key: KeyPath | None = None  # None: the answer is the list itself
    code_key: KeyPath = "code"
    name_key: KeyPath = "name"

    @field_validator("codes")
    @classmethod
    def _one_to_one(cls, codes: dict[str, str]) -> dict[str, str]:
        if len(set(codes.values())) != len(codes):
            raise ValueError("two services share one department code")
        return codes

    @field_validator("path")
    @classmethod
    def _no_placeholders(cls, path: str | None) -> str | None:
        if path is not None:
            _check_placeholders(path, set())
        return path


class SubmitSpec(_Spec):
    """How a :class:`Submission` becomes the department's request, and where its answer
    keeps the reference (the department's, for staff) and the id (for status queries)."""

    method: Literal["POST", "PUT"] = "POST"
    path: UrlPath  # may hold {service}: the department's code for the service
    fields: dict[Code, KeyPath] = Field(min_length=1)  # our field name → its body key
    constants: dict[KeyPath, Scalar] = Field(default_factory=dict)
    service_key: KeyPath | None = None
    language_key: KeyPath | None = None
    idempotency_header: HeaderName | None = "Idempotency-Key"
    reference_key: KeyPath
    id_key: KeyPath
    status_key: KeyPath | None = None  # None: a new application is Stage.RECEIVED

    @model_validator(mode="after")
    def _body_keys_do_not_overlap(self) -> Self:
        keys = [*self.fields.values(), *self.constants, self.service_key, self.language_key]
        paths = [key for key in keys if key is not None]
        if len(set(paths)) != len(paths):
            raise ValueError("a body key is used twice")
        for outer in paths:
            if inner := next((key for key in paths if key.startswith(f"{outer}.")), None):
                raise ValueError(f"body keys {outer!r} and {inner!r} overlap")
        _check_placeholders(self.path, {"service"})
        return self


class StatusSpec(_Spec):
    path: UrlPath  # must hold {id}
    reference_key: KeyPath
    status_key: KeyPath
    updated_key: KeyPath | None = None
    note_key: KeyPath | None = None

    @field_validator("path")
    @classmethod
    def _has_id(cls, path: str) -> str:
        if "id" not in _check_placeholders(path, {"id"}):
            raise ValueError("the status path needs an {id} placeholder")
        return path


class ErrorsSpec(_Spec):
    """Where a 400/422 answer lists field errors. A reported field (dotted, a JSON pointer
    or a list of segments) is matched to the submit body key it ends with, hence to ours."""

    list_key: KeyPath | None = None  # None: the answer is the list itself
    field_key: KeyPath = "field"
    message_key: KeyPath = "message"


class DepartmentSpec(_Spec):
    """One department's API. ``name`` is what catalogue services put in ``connector:``."""

    name: Code
    base_url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+(/\S*)?$")]
    auth: AuthSpec | None = None
    services: ServicesSpec
    submit: SubmitSpec
    status: StatusSpec
    stages: dict[str, Stage] = Field(min_length=1)  # its status word → ours, any case
    errors: ErrorsSpec = Field(default_factory=ErrorsSpec)

    @field_validator("stages")
    @classmethod
    def _fold_case(cls, stages: dict[str, Stage]) -> dict[str, Stage]:
        folded = {word.casefold(): stage for word, stage in stages.items()}
        if len(folded) != len(stages):
            raise ValueError("status words differ only by case")
        return folded


def load_department(path: Path | str) -> DepartmentSpec:
    """Parse and validate one description; any error names the file."""
    source = Path(path)
    try:
        with source.open(encoding="utf-8") as stream:
            return DepartmentSpec.model_validate(yaml.safe_load(stream))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"department description {source}: {exc}") from exc


def department_configs(
    paths: Iterable[Path | str], timeout_seconds: float = 10.0
) -> dict[str, ConnectorConfig]:
    """One config per description, keyed by department ``name`` (the catalogue's
    ``connector:`` value); ``options["kind"]`` tells the gateway which class builds it."""
    configs: dict[str, ConnectorConfig] = {}
    for path in paths:
        spec = load_department(path)
        if spec.name in configs:
            raise ValueError(f"two department descriptions are named {spec.name!r}")
        configs[spec.name] = ConnectorConfig(
            base_url=spec.base_url,
            timeout_seconds=timeout_seconds,
            options={"kind": RestConnector.kind, "spec_path": str(path)},
        )
    return configs


class RestConnector(ServiceConnector):
    """The connector for a department described by a :class:`DepartmentSpec`.

    Built from ``ConnectorConfig.options["spec_path"]`` (or a ``spec`` directly); a
    non-empty ``config.base_url`` overrides the description's, e.g. to aim at a test double.
    """

    kind = "rest"

    def __init__(
        self,
        config: ConnectorConfig,
        client: httpx.AsyncClient | None = None,
        *,
        spec: DepartmentSpec | None = None,
    ) -> None:
        if spec is None:
            if not (spec_path := config.options.get("spec_path")):
                raise ValueError("the rest connector needs options['spec_path']")
            spec = load_department(spec_path)
        self.spec = spec
        self._fields_by_key = {key: ours for ours, key in spec.submit.fields.items()}
        self._headers: dict[str, str] | None = None
        super().__init__(
            dataclasses.replace(config, base_url=config.base_url or spec.base_url), client
        )

    async def initialize(self) -> None:
        """Reads the secret first, so a missing variable stops startup with its name."""
        self._headers = self._auth_headers()
        await super().initialize()

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            raise RuntimeError(f"{type(self).__name__} used before initialize()")
        return dict(self._headers)

    async def _list_services(self) -> list[RemoteService]:
        services, fields = self.spec.services, tuple(self.spec.submit.fields)
        if services.path is None:
            return [RemoteService(ours, theirs, fields) for ours, theirs in services.codes.items()]
        response = await self.client.get(self._url(services.path), headers=self.headers)
        answer = self._json(response.raise_for_status())
        items = answer if services.list_key is None else self._required(answer, services.list_key)
        if not isinstance(items, list):
            raise self._misconfigured(f"no list of services at {services.list_key!r}")
        ours_by_theirs = {theirs: ours for ours, theirs in services.codes.items()}
        offered = []
        for item in items:
            theirs = self._text(item, services.code_key)
            if (ours := ours_by_theirs.get(theirs)) is not None:
                offered.append(RemoteService(ours, self._text(item, services.name_key), fields))
        return offered

    async def _describe_fields(self, service: Service) -> list[str]:
        if service.code not in {remote.code for remote in await self._list_services()}:
            raise self._misconfigured(f"does not offer {service.code}")
        return list(self.spec.submit.fields)

    async def _submit(self, submission: Submission) -> Receipt:
        submit = self.spec.submit
        theirs = self.spec.services.codes.get(submission.service_code)
        if theirs is None:
            raise self._misconfigured(f"has no code for service {submission.service_code}")
        headers = self.headers
        if submit.idempotency_header:
            headers[submit.idempotency_header] = submission.idempotency_key
        response = await self.client.request(
            submit.method,
            self._url(submit.path, service=theirs),
            headers=headers,
            json=self._body(submission, theirs),
        )
        if response.status_code in (400, 422):
            raise self._rejection(response)
        if response.status_code in (404, 405):
            raise self._misconfigured(f"{submit.method} {submit.path}: HTTP {response.status_code}")
        answer = self._json(response.raise_for_status())
        return Receipt(
            reference=self._text(answer, submit.reference_key),
            stage=self._stage(answer, submit.status_key) if submit.status_key else Stage.RECEIVED,
            backend_id=self._text(answer, submit.id_key),
        )

    async def _get_status(self, backend_id: str) -> StatusReport:
        status = self.spec.status
        if backend_id in ("", ".", ".."):  # would address the collection or its parent
            raise ApplicationNotFound(backend_id)
        response = await self.client.get(
            self._url(status.path, id=backend_id), headers=self.headers
        )
        answer = self._json(response.raise_for_status())
        updated = _dig(answer, status.updated_key) if status.updated_key else None
        note = _dig(answer, status.note_key) if status.note_key else None
        try:
            updated_at = None if updated in (None, _MISSING) else _DATETIME.validate_python(updated)
        except ValidationError as exc:
            raise self._misconfigured(f"{status.updated_key!r} is not a time") from exc
        return StatusReport(
            reference=self._text(answer, status.reference_key),
            stage=self._stage(answer, status.status_key),
            updated_at=updated_at,
            note=None if note in (None, _MISSING) else str(note),
        )

    # --- the department's shapes -----------------------------------------------------------

    def _body(self, submission: Submission, service_code: str) -> dict[str, object]:
        """Unmapped fields fail loudly: silently dropping a citizen's answer is worse."""
        submit = self.spec.submit
        body: dict[str, object] = {}
        for key, value in submit.constants.items():
            _put(body, key, value)
        if submit.service_key:
            _put(body, submit.service_key, service_code)
        if submit.language_key:
            _put(body, submit.language_key, submission.language)
        for name, value in submission.fields.items():
            if (field_key := submit.fields.get(name)) is None:
                raise self._misconfigured(f"has no body key for field {name}")
            _put(body, field_key, value)
        return body

    def _rejection(self, response: httpx.Response) -> SubmissionRejected:
        """The department's field errors under OUR field names; the rest in the message."""
        errors = self.spec.errors
        try:
            answer: object = response.json()
        except ValueError:
            answer = None
        items = answer if errors.list_key is None else _dig(answer, errors.list_key)
        ours: dict[str, str] = {}
        other: list[str] = []
        for item in items if isinstance(items, list) else []:
            where, message = _dig(item, errors.field_key), _dig(item, errors.message_key)
            text = "" if message is _MISSING else str(message)
            name = self._our_field(where)
            if name is not None:
                ours[name] = text
            else:
                other.append(text if where is _MISSING else f"{where}: {text}")
        detail = f": {'; '.join(other)}" if other else ""
        return SubmissionRejected(
            f"{self.spec.name} refused the application{detail}",
            ours,
            status=response.status_code,
            excerpt=excerpt(response.content),
        )

    def _our_field(self, where: object) -> str | None:
        if isinstance(where, list):
            where = ".".join(str(segment) for segment in where)
        if not isinstance(where, str):
            return None
        path = where.strip("/").replace("/", ".")
        matches = [key for key in self._fields_by_key if f".{path}".endswith(f".{key}")]
        return self._fields_by_key[max(matches, key=len)] if matches else None

    def _stage(self, answer: object, key: str) -> Stage:
        word = self._text(answer, key)
        try:
            return self.spec.stages[word.casefold()]
        except KeyError:
            raise self._misconfigured(f"status word {word!r} is not in its stages") from None

    def _text(self, answer: object, key: str) -> str:
        value = self._required(answer, key)
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self._misconfigured(f"{key!r} is not a string or a number")
        return str(value)

    def _required(self, answer: object, key: str) -> object:
        if (value := _dig(answer, key)) is _MISSING:
            raise self._misconfigured(f"answered without {key!r}")
        return value

    def _json(self, response: httpx.Response) -> object:
        """A 2xx body that is not JSON is a proxy or a maintenance page: retry later."""
        try:
            answer: object = response.json()
        except ValueError as exc:
            message = f"{self.spec.name}: the answer is not JSON"
            raise BackendTransient.answered(response, message) from exc
        return answer

    # --- configuration -----------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        auth = self.spec.auth
        if auth is None:
            return {}
        if not (secret := os.environ.get(auth.secret_env, "")):
            raise self._misconfigured(
                f"needs the environment variable {auth.secret_env} (its {auth.header} secret)"
            )
        return {auth.header: f"{auth.prefix}{secret}"}

    def _url(self, template: str, **values: str) -> str:
        """Absolute, so an injected client needs no ``base_url``; values are escaped, so an
        id cannot reach another path."""
        path = template.format(**{name: quote(value, safe="") for name, value in values.items()})
        return f"{self.config.base_url.rstrip('/')}{path}"

    def _misconfigured(self, problem: str) -> BackendMisconfigured:
        return BackendMisconfigured(f"department {self.spec.name} {problem}")


def _check_placeholders(template: str, allowed: set[str]) -> set[str]:
    """The ``{name}`` placeholders of a path, refusing any not in ``allowed``."""
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    if unknown := names - allowed:
        raise ValueError(f"{template}: unknown placeholders {sorted(unknown)}")
    return names


def _dig(document: object, key: str) -> object:
    """The value at a dotted key, or ``_MISSING``."""
    node = document
    for segment in key.split("."):
        if isinstance(node, dict) and segment in node:
            node = node[segment]
        elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
            node = node[int(segment)]
        else:
            return _MISSING
    return node


def _put(document: dict[str, object], key: str, value: object) -> None:
    """Set a dotted key, creating the objects on the way (overlaps are refused at load)."""
    *parents, leaf = key.split(".")
    node = document
    for segment in parents:
        child = node.setdefault(segment, {})
        if not isinstance(child, dict):
            raise BackendMisconfigured(f"body key {key!r} overlaps another")
        node = child
    node[leaf] = value
