"""Phone numbers in one form (E.164), with the ``phonenumbers`` library."""

from __future__ import annotations

import phonenumbers


class InvalidPhoneNumberError(ValueError):
    """Not a number we can text."""


def to_e164(raw: str, default_region: str) -> str:
    """``"(514) 555-0100"`` → ``"+15145550100"``; refuses what cannot be a real number."""
    try:
        parsed = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumberError(str(exc)) from exc
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidPhoneNumberError("not a possible phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
