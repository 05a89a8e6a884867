"""Builds one connector per backend kind the catalogue uses, configured from settings."""

from __future__ import annotations

from bot.settings import Settings
from service_connectors.base import ConnectorConfig, ServiceConnector
from service_connectors.catalogue import Catalogue
from service_connectors.registry import connector_class


def connector_configs(settings: Settings) -> dict[str, ConnectorConfig]:
    return {
        "reference": ConnectorConfig(
            base_url=str(settings.reference_backend_url).rstrip("/"),
            api_key=settings.reference_backend_api_key.get_secret_value(),
            timeout_seconds=settings.connector_timeout_seconds,
            breaker_threshold=settings.connector_breaker_threshold,
            breaker_cooldown_seconds=settings.connector_breaker_cooldown_seconds,
        )
    }


def build_connectors(settings: Settings, catalogue: Catalogue) -> dict[str, ServiceConnector]:
    configs = connector_configs(settings)
    kinds = {service.connector for service in catalogue.services}
    missing = kinds - configs.keys()
    if missing:
        raise ValueError(f"catalogue uses connectors with no configuration: {sorted(missing)}")
    return {kind: connector_class(kind)(configs[kind]) for kind in sorted(kinds)}
