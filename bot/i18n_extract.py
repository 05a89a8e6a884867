"""Babel extractor for the YAML sources: the service catalogue and the Rasa domain.

Registered in ``babel.cfg`` as ``bot.i18n_extract:extract_yaml``. It yields the values
of translatable keys with their line numbers, so translators see where a text comes from.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import yaml

# Keys whose string values (or lists of strings) are citizen-facing text.
TRANSLATABLE_KEYS = frozenset(
    {"name", "description", "documents", "label", "prompt", "hint", "text", "title"}
)
# Keys whose values are identifiers even though they hold strings.
IDENTIFIER_PARENTS = frozenset({"fields", "choices"})

Extracted = tuple[int, str, str, list[str]]


def _walk(node: yaml.Node, key: str | None, top_level: bool) -> Iterator[Extracted]:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            yield from _walk(value_node, str(key_node.value), False)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _walk(item, key, False)
    elif isinstance(node, yaml.ScalarNode) and key in TRANSLATABLE_KEYS and not top_level:
        text = str(node.value).strip()
        if text and not _is_identifier(key, text):
            yield node.start_mark.line + 1, "gettext", text, []


def _is_identifier(key: str, text: str) -> bool:
    """Field ``name: child_full_name`` is an identifier; service ``name: Passport`` is text."""
    return key == "name" and text.replace("_", "").isalnum() and text == text.lower()


def extract_yaml(
    fileobj: IO[bytes], keywords: Any, comment_tags: Any, options: dict[str, Any]
) -> Iterator[Extracted]:
    document = yaml.compose(fileobj.read().decode("utf-8"))
    if document is not None:
        yield from _walk(document, None, True)
