"""The real catalogue loads, bad catalogues are refused, references are found in text."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from service_connectors.catalogue import (
    DEFAULT_CATALOGUE_PATH,
    REFERENCE_ALPHABET,
    FieldType,
    find_reference,
    load_catalogue,
)

Mutation = Callable[[dict[str, Any]], None]


def test_real_catalogue_loads_with_its_six_services() -> None:
    catalogue = load_catalogue()

    assert catalogue.codes == [
        "birth_certificate",
        "passport",
        "address_change",
        "child_benefit",
        "pothole",
        "streetlight",
    ]
    assert [s.prefix for s in catalogue.services] == ["BC", "PP", "AC", "CB", "PH", "SL"]


def test_birth_certificate_asks_its_fields_in_order() -> None:
    service = load_catalogue().get("birth_certificate")

    assert service is not None
    assert [f.name for f in service.fields] == [
        "child_full_name",
        "child_date_of_birth",
        "place_of_birth",
        "parent_full_name",
    ]
    assert service.verification_field == "child_date_of_birth"


def test_every_choice_field_has_choices_and_no_other_field_does() -> None:
    for service in load_catalogue().services:
        for spec in service.fields:
            assert bool(spec.choices) == (spec.type is FieldType.CHOICE), spec.name


def test_prefixes_cannot_be_confused_with_reference_bodies() -> None:
    """A prefix is matched case-insensitively; it must stay two plain letters."""
    for service in load_catalogue().services:
        assert service.prefix.isalpha() and service.prefix.isupper()


# --- bad catalogues ----------------------------------------------------------------------


def _valid_catalogue() -> dict[str, Any]:
    return {
        "currency": "CAD",
        "services": [
            {
                "code": "pothole",
                "prefix": "PH",
                "connector": "reference",
                "name": "Pothole report",
                "description": "Report a pothole.",
                "processing_days": 7,
                "verification_field": "location",
                "fields": [
                    {
                        "name": "location",
                        "type": "text",
                        "label": "Location",
                        "prompt": "Where is it?",
                        "hint": "A street.",
                    },
                    {
                        "name": "size",
                        "type": "choice",
                        "label": "Size",
                        "prompt": "How big?",
                        "hint": "1 or 2.",
                        "choices": [
                            {"value": "small", "label": "Small"},
                            {"value": "large", "label": "Large"},
                        ],
                    },
                ],
            }
        ],
    }


def _second_service(data: dict[str, Any], **changes: Any) -> None:
    other = copy.deepcopy(data["services"][0])
    other.update({"code": "streetlight", "prefix": "SL", **changes})
    data["services"].append(other)


def _first_service(data: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = data["services"][0]
    return service


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "catalogue.yml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_the_valid_fixture_loads(tmp_path: Path) -> None:
    """Guards the table below: each bad case must fail for its own reason only."""
    assert load_catalogue(_write(tmp_path, _valid_catalogue())).codes == ["pothole"]


BAD_CATALOGUES: list[tuple[str, Mutation, str]] = [
    ("duplicate code", lambda d: _second_service(d, code="pothole"), "duplicate service code"),
    ("duplicate prefix", lambda d: _second_service(d, prefix="PH"), "duplicate service prefix"),
    (
        "choice field without choices",
        lambda d: _first_service(d)["fields"][1].pop("choices"),
        "choices are required",
    ),
    (
        "choices on a text field",
        lambda d: _first_service(d)["fields"][0].update(choices=[{"value": "a", "label": "A"}]),
        "choices are required",
    ),
    (
        "verification_field not a field",
        lambda d: _first_service(d).update(verification_field="date_of_birth"),
        "verification_field",
    ),
    ("lowercase prefix", lambda d: _first_service(d).update(prefix="ph"), "prefix"),
    ("three-letter prefix", lambda d: _first_service(d).update(prefix="PHX"), "prefix"),
    ("prefix with a digit", lambda d: _first_service(d).update(prefix="P1"), "prefix"),
    (
        "duplicate field names",
        lambda d: _first_service(d)["fields"].append(_first_service(d)["fields"][0]),
        "duplicate field names",
    ),
    ("no fields", lambda d: _first_service(d).update(fields=[]), "fields"),
    ("unknown key", lambda d: _first_service(d).update(colour="red"), "colour"),
    ("bad code", lambda d: _first_service(d).update(code="Pot hole"), "code"),
    ("bad currency", lambda d: d.update(currency="dollars"), "currency"),
    ("no services", lambda d: d.update(services=[]), "services"),
]


@pytest.mark.parametrize(
    ("mutate", "complaint"),
    [pytest.param(mutate, complaint, id=case) for case, mutate, complaint in BAD_CATALOGUES],
)
def test_bad_catalogues_are_refused(tmp_path: Path, mutate: Mutation, complaint: str) -> None:
    data = _valid_catalogue()
    mutate(data)

    with pytest.raises(ValidationError, match=complaint):
        load_catalogue(_write(tmp_path, data))


def test_default_path_is_the_packaged_file() -> None:
    assert DEFAULT_CATALOGUE_PATH.name == "catalogue.yml"
    assert DEFAULT_CATALOGUE_PATH.is_file()


# --- references in free text ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bc-7k3q9p", "BC-7K3Q9P"),
        ("BC 7K3Q9P", "BC-7K3Q9P"),
        ("bc7k3q9p", "BC-7K3Q9P"),
        ("BC-7K3Q9P", "BC-7K3Q9P"),
        ("BC - 7K3Q9P", "BC-7K3Q9P"),
        ("status of pp-kqxmpz please", "PP-KQXMPZ"),  # with a dash, no digit needed
        ("my ref is Sl-23456z, thanks", "SL-23456Z"),
        ("first ph-22222a then ac-33333b", "PH-22222A"),
        ("статус ВС-7К3Q9Р", "BC-7K3Q9P"),  # typed on a Cyrillic keyboard (look-alikes)
        ("мой номер РН-22222А", "PH-22222A"),
    ],
)
def test_find_reference_accepts(text: str, expected: str) -> None:
    assert find_reference(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "my street",
        "standard",
        "birth certificate please",
        "BC-7K3Q90",  # zero is not in the alphabet
        "BC-7K3Q9O",  # nor the letter O
        "BC-7K3Q91",  # nor one
        "BC-7K3Q9I",  # nor the letter I
        "BC-7K3Q9",  # too short
        "BC-7K3Q9PX",  # too long
        "BCD-7K3Q9P",  # three-letter prefix
        "bckqxmpz",  # no dash and no digit: reads like a word
        "",
    ],
)
def test_find_reference_refuses(text: str) -> None:
    assert find_reference(text) is None


def test_reference_alphabet_avoids_lookalikes() -> None:
    assert not set("01IO") & set(REFERENCE_ALPHABET)
    assert len(set(REFERENCE_ALPHABET)) == len(REFERENCE_ALPHABET) == 32
