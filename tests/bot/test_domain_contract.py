"""The dialogue contract between the Rasa domain, the NLU data and the gateway."""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.actions.handlers import ACTIONS
from bot.settings import PROJECT_ROOT
from service_connectors.catalogue import load_catalogue

CONTRACT_INTENTS = {
    "greet", "goodbye", "affirm", "deny", "thank", "help", "apply_service", "check_status",
    "service_info", "talk_to_human", "change_language", "cancel", "out_of_scope",
}  # fmt: skip


def domain() -> dict[str, object]:
    return dict(yaml.safe_load((PROJECT_ROOT / "bot" / "domain.yml").read_text()))


def nlu_languages() -> list[Path]:
    return sorted(p for p in (PROJECT_ROOT / "intents").iterdir() if p.is_dir())


def test_every_custom_action_of_the_domain_has_one_handler() -> None:
    declared = set(domain()["actions"])  # type: ignore[arg-type]
    assert declared == set(ACTIONS), (declared - set(ACTIONS), set(ACTIONS) - declared)


def test_intents_and_entities_are_the_contract() -> None:
    assert set(domain()["intents"]) == CONTRACT_INTENTS  # type: ignore[arg-type]
    assert set(domain()["entities"]) == {"service", "reference", "language"}  # type: ignore[arg-type]


def test_every_language_trains_every_intent_and_maps_every_service() -> None:
    codes = {service.code for service in load_catalogue().services}
    for folder in nlu_languages():
        nlu = [
            item
            for path in folder.rglob("*.yml")
            for item in yaml.safe_load(path.read_text())["nlu"]
        ]
        intents = {item["intent"] for item in nlu if "intent" in item}
        synonyms = {item["synonym"] for item in nlu if "synonym" in item}
        assert intents == CONTRACT_INTENTS, folder.name
        assert codes <= synonyms, (folder.name, codes - synonyms)
