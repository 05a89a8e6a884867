"""The service catalogue: what each service asks, costs and needs, read from YAML.

The catalogue is data, not code: a new service is a new entry in ``catalogue.yml``
(plus NLU examples). Every text in it is an English msgid translated at render time.
"""

from __future__ import annotations

import enum
import re
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

DEFAULT_CATALOGUE_PATH = Path(__file__).with_name("catalogue.yml")

Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]


class FieldType(enum.StrEnum):
    TEXT = "text"
    NAME = "name"
    DATE = "date"
    NUMBER = "number"
    CHOICE = "choice"


class Choice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    value: Code
    label: str


class ServiceField(BaseModel):
    """One question of a service's application, with its validation rules."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Code
    type: FieldType
    label: str
    prompt: str
    hint: str
    required: bool = True
    not_future: bool = False
    min_length: int = Field(default=1, ge=0)
    max_length: int = Field(default=120, ge=1)
    min_value: int | None = None
    max_value: int | None = None
    choices: tuple[Choice, ...] = ()

    @model_validator(mode="after")
    def _choices_match_type(self) -> Self:
        if (self.type is FieldType.CHOICE) != bool(self.choices):
            raise ValueError(
                f"field {self.name}: choices are required for, and only for, type choice"
            )
        return self


class Service(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: Code
    prefix: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
    connector: Code
    name: str
    description: str
    documents: tuple[str, ...] = ()
    fee: Decimal = Decimal(0)
    processing_days: int = Field(ge=0)
    verification_field: Code
    fields: tuple[ServiceField, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_fields(self) -> Self:
        names = [f.name for f in self.fields]
        if len(names) != len(set(names)):
            raise ValueError(f"service {self.code}: duplicate field names")
        if self.verification_field not in names:
            raise ValueError(f"service {self.code}: verification_field is not one of its fields")
        return self

    def field(self, name: str) -> ServiceField:
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    def next_missing_field(self, answers: dict[str, str]) -> ServiceField | None:
        return next((f for f in self.fields if f.name not in answers), None)


class Catalogue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    services: tuple[Service, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        for attribute in ("code", "prefix"):
            values = [getattr(s, attribute) for s in self.services]
            if len(values) != len(set(values)):
                raise ValueError(f"catalogue: duplicate service {attribute}")
        return self

    @property
    def codes(self) -> list[str]:
        return [s.code for s in self.services]

    def get(self, code: str | None) -> Service | None:
        return next((s for s in self.services if s.code == code), None)

    def by_prefix(self, reference: str) -> Service | None:
        prefix = reference[:2].upper()
        return next((s for s in self.services if s.prefix == prefix), None)


def load_catalogue(path: Path | str = DEFAULT_CATALOGUE_PATH) -> Catalogue:
    with Path(path).open(encoding="utf-8") as stream:
        return Catalogue.model_validate(yaml.safe_load(stream))


@lru_cache(maxsize=4)
def cached_catalogue(path: str = str(DEFAULT_CATALOGUE_PATH)) -> Catalogue:
    return load_catalogue(path)


# References: two letters, a dash, six characters from an alphabet without 0, O, 1, I —
# easy to read aloud and to type on a keypad.
REFERENCE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
REFERENCE_PATTERN = re.compile(
    rf"\b([A-Za-z]{{2}})(\s*-\s*|\s?)([{REFERENCE_ALPHABET}{REFERENCE_ALPHABET.lower()}]{{6}})\b"
)


# What prompts show as a reference: visibly a placeholder, and never a reference (no
# reference has this body: find_reference refuses it, new_reference never draws it), so
# a citizen who copies it is told it is only an example instead of "not found".
EXAMPLE_REFERENCE = "BC-XXXXXX"
_EXAMPLE_BODY = EXAMPLE_REFERENCE.split("-")[1]

# Typed on a Cyrillic keyboard, "BC-7K3Q9P" may come as "ВС-7К3Q9Р": same-looking letters.
_CYRILLIC_LOOKALIKES = str.maketrans("АВЕКМНОРСТХаеорсху", "ABEKMHOPCTXaeopcxy")


def find_reference(text: str) -> str | None:
    """The first reference in ``text``, normalised to ``XX-XXXXXX``.

    Tolerant of case and of a missing dash; without the dash the body must hold a digit,
    so that ordinary words ("my street", "standard") are not taken for references. The
    prompts' example (:data:`EXAMPLE_REFERENCE`, any prefix) is not one.
    """
    for match in REFERENCE_PATTERN.finditer(text.translate(_CYRILLIC_LOOKALIKES)):
        letters, separator, body = match.groups()
        if body.upper() == _EXAMPLE_BODY:
            continue
        if "-" in separator or any(ch.isdigit() for ch in body):
            return f"{letters.upper()}-{body.upper()}"
    return None


def is_example_reference(text: str) -> bool:
    """Whether ``text`` holds the prompts' example reference (copied from a prompt)."""
    return any(
        match.group(3).upper() == _EXAMPLE_BODY
        for match in REFERENCE_PATTERN.finditer(text.translate(_CYRILLIC_LOOKALIKES))
    )


def new_reference(prefix: str) -> str:
    """A fresh random reference like ``BC-7K3Q9P`` (32⁶ ≈ 10⁹ per service prefix)."""
    import secrets

    while True:
        body = "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(6))
        if body != _EXAMPLE_BODY:
            return f"{prefix}-{body}"
