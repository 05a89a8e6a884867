"""Builds one connector per backend the catalogue uses, configured from settings.

The catalogue names a connector per service: a backend kind (``reference``, ``open311``)
or a department described in YAML (``DEPARTMENT_SPECS``, built by the ``rest`` kind).
With ``OPEN311_BASE_URL`` set, the services in ``OPEN311_SERVICES`` (pothole and
streetlight by default) go to the city's Open311 endpoint instead.
"""

from __future__ import annotations

from bot.settings import Settings
from service_connectors.base import ConnectorConfig, ServiceConnector
from service_connectors.catalogue import Catalogue
from service_connectors.registry import CONNECTORS, connector_class
from service_connectors.rest import department_configs


def connector_configs(settings: Settings) -> dict[str, ConnectorConfig]:
    breaker = {
        "breaker_threshold": settings.connector_breaker_threshold,
        "breaker_cooldown_seconds": settings.connector_breaker_cooldown_seconds,
    }
    configs = {
        "reference": ConnectorConfig(
            base_url=str(settings.reference_backend_url).rstrip("/"),
            api_key=settings.reference_backend_api_key.get_secret_value(),
            timeout_seconds=settings.connector_timeout_seconds,
            **breaker,  # type: ignore[arg-type]
        )
    }
    if settings.open311_base_url is not None:
        options = {
            f"service_code.{ours}": theirs
            for ours, theirs in settings.open311_service_codes.items()
        }
        if settings.open311_jurisdiction_id:
            options["jurisdiction_id"] = settings.open311_jurisdiction_id
        options.update(  # the city server's dialect, see service_connectors.open311
            address_field=settings.open311_address_field,
            attribute_format=settings.open311_attribute_format,
            request_search=str(settings.open311_request_search).lower(),
            creation_window_seconds=str(settings.open311_creation_window_seconds),
        )
        configs["open311"] = ConnectorConfig(
            base_url=str(settings.open311_base_url).rstrip("/"),
            api_key=settings.open311_api_key.get_secret_value()
            if settings.open311_api_key
            else None,
            timeout_seconds=settings.connector_timeout_seconds,
            options=options,
            **breaker,  # type: ignore[arg-type]
        )
    departments = department_configs(settings.department_specs, settings.connector_timeout_seconds)
    if clash := departments.keys() & (set(CONNECTORS) | configs.keys()):
        raise ValueError(f"department names clash with connector kinds: {sorted(clash)}")
    for config in departments.values():
        config.breaker_threshold = settings.connector_breaker_threshold
        config.breaker_cooldown_seconds = settings.connector_breaker_cooldown_seconds
    every = {**configs, **departments}
    unknown = (
        settings.submission_max_attempts_by_connector.keys()
        | settings.submission_max_hours_by_connector.keys()
    ) - every.keys()
    if unknown:
        raise ValueError(f"submission caps name unknown connectors: {sorted(unknown)}")
    for name, config in every.items():
        config.max_attempts = settings.submission_max_attempts_by_connector.get(
            name, settings.submission_max_attempts
        )
        config.max_hours = settings.submission_max_hours_by_connector.get(
            name, settings.submission_max_hours
        )
        config.same_error_refuses = settings.backend_same_error_refuses
    return every


def routed_catalogue(settings: Settings, catalogue: Catalogue) -> Catalogue:
    """The catalogue with the Open311 services pointed at ``open311`` when configured."""
    if settings.open311_base_url is None:
        return catalogue
    services = tuple(
        s.model_copy(update={"connector": "open311"}) if s.code in settings.open311_services else s
        for s in catalogue.services
    )
    return catalogue.model_copy(update={"services": services})


def build_connectors(settings: Settings, catalogue: Catalogue) -> dict[str, ServiceConnector]:
    configs = connector_configs(settings)
    names = {service.connector for service in catalogue.services}
    missing = names - configs.keys()
    if missing:
        raise ValueError(f"catalogue uses connectors with no configuration: {sorted(missing)}")
    return {
        name: connector_class(configs[name].options.get("kind", name))(configs[name])
        for name in sorted(names)
    }
