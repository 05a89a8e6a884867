"""Connectors from settings: Open311 routing of the catalogue, YAML departments."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.connectors import build_connectors, connector_configs, routed_catalogue
from bot.settings import PROJECT_ROOT, Settings
from service_connectors.catalogue import load_catalogue
from service_connectors.open311 import Open311Connector
from service_connectors.rest import RestConnector

SPEC = PROJECT_ROOT / "service_connectors" / "departments" / "example_permits.yml"


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_without_open311_every_service_uses_the_reference_backend() -> None:
    catalogue = routed_catalogue(settings(), load_catalogue())
    assert {s.connector for s in catalogue.services} == {"reference"}


def test_open311_takes_potholes_and_streetlights_with_the_citys_codes() -> None:
    configured = settings(
        open311_base_url="http://127.0.0.1:9/open311",
        open311_api_key="key",
        open311_jurisdiction_id="city.example.org",
        open311_service_codes={"pothole": "4fd3b1"},
    )
    catalogue = routed_catalogue(configured, load_catalogue())
    routed = {s.code: s.connector for s in catalogue.services}
    assert routed["pothole"] == routed["streetlight"] == "open311"
    assert routed["passport"] == "reference"
    connectors = build_connectors(configured, catalogue)
    assert isinstance(connectors["open311"], Open311Connector)
    options = connectors["open311"].config.options
    assert options["service_code.pothole"] == "4fd3b1"
    assert options["jurisdiction_id"] == "city.example.org"


def test_a_department_description_becomes_a_connector(monkeypatch: pytest.MonkeyPatch) -> None:
    configs = connector_configs(settings(department_specs=(SPEC,)))
    assert configs["example_permits"].options["kind"] == "rest"
    catalogue = load_catalogue()
    permits = catalogue.services[0].model_copy(update={"connector": "example_permits"})
    catalogue = catalogue.model_copy(update={"services": (permits, *catalogue.services[1:])})
    connectors = build_connectors(settings(department_specs=(SPEC,)), catalogue)
    assert isinstance(connectors["example_permits"], RestConnector)


def test_a_department_cannot_take_a_connector_kinds_name(tmp_path: Path) -> None:
    clash = tmp_path / "reference.yml"
    clash.write_text(SPEC.read_text().replace("name: example_permits", "name: reference", 1))
    with pytest.raises(ValueError, match="clash"):
        connector_configs(settings(department_specs=(clash,)))
