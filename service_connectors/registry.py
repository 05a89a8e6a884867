"""The connector kinds the gateway can build, by the name the catalogue uses.

Explicit on purpose: adding a backend kind is one line in ``CONNECTOR_CLASSES``, and
a catalogue naming a kind that is not here fails loudly, not with an import side effect.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from service_connectors.base import ServiceConnector
from service_connectors.open311 import Open311Connector
from service_connectors.reference import ReferenceConnector
from service_connectors.rest import RestConnector

CONNECTOR_CLASSES: tuple[type[ServiceConnector], ...] = (
    ReferenceConnector,
    Open311Connector,
    RestConnector,
)


def index_by_kind(
    classes: Iterable[type[ServiceConnector]],
) -> Mapping[str, type[ServiceConnector]]:
    """``kind`` → class, refusing two classes that claim one kind."""
    index: dict[str, type[ServiceConnector]] = {}
    for cls in classes:
        if (taken := index.get(cls.kind)) is not None:
            raise ValueError(
                f"connector kind {cls.kind!r} claimed by {taken.__name__} and {cls.__name__}"
            )
        index[cls.kind] = cls
    return MappingProxyType(index)


CONNECTORS: Mapping[str, type[ServiceConnector]] = index_by_kind(CONNECTOR_CLASSES)


def connector_class(kind: str) -> type[ServiceConnector]:
    """The class for ``kind``; ``KeyError`` naming the known kinds otherwise."""
    try:
        return CONNECTORS[kind]
    except KeyError:
        known = ", ".join(sorted(CONNECTORS)) or "none"
        raise KeyError(f"unknown connector kind {kind!r} (known: {known})") from None
