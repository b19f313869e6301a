"""Facts a rule reads: attributes of offers and holders, statuses, age, `[config]`.

The host checks every attribute and `[config]` value against the `[schema]` of the
program's manifest when it loads the catalogue and `[config]` and when it registers a
holder: an undeclared key or a value of another type is refused there. So a declared
attribute arrives with its declared type, and `None` from a typed reader means the
attribute is absent; a typo does not silently become the rule's default. Text that
parses as an integer or boolean still counts, as in the Rust SDK, for holders a ledger
kept from before the host checked types.
"""

from __future__ import annotations

import re
from typing import List, Optional, Union

from wit_world.imports import ledger
from wit_world.imports.types import (
    Attribute,
    Date,
    Holder,
    Offer,
    Value,
    Value_Boolean,
    Value_Integer,
    Value_Text,
)

#: Something that carries attributes: an offer, a holder or the list itself.
HasAttributes = Union[Offer, Holder, List[Attribute]]

# What Rust's `i64::from_str` accepts (and so the Rust SDK): an optional sign and
# digits, nothing else. Python's `int()` would also take `1_000` and inner spaces,
# and a policy must read the same text the same way in both languages.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def parse_int(text: str) -> Optional[int]:
    """`text`, trimmed, as a 64-bit integer; None if it is not one (as Rust parses it)."""
    text = text.strip()
    if not _INTEGER.fullmatch(text):
        return None
    number = int(text)
    return number if _I64_MIN <= number <= _I64_MAX else None


def attr(owner: HasAttributes, key: str) -> Optional[Value]:
    """The attribute's raw value (`Value_Text`, `Value_Integer` or `Value_Boolean`)."""
    attributes = owner if isinstance(owner, list) else owner.attributes
    for attribute in attributes:
        if attribute.key == key:
            return attribute.value
    return None


def attr_int(owner: HasAttributes, key: str) -> Optional[int]:
    """The attribute as an integer; text that parses as one counts too."""
    value = attr(owner, key)
    if isinstance(value, Value_Integer):
        return value.value
    if isinstance(value, Value_Text):
        return parse_int(value.value)
    return None


def attr_bool(owner: HasAttributes, key: str) -> Optional[bool]:
    """The attribute as a boolean; the text `true` / `false` counts too."""
    value = attr(owner, key)
    if isinstance(value, Value_Boolean):
        return value.value
    if isinstance(value, Value_Text):
        return {"true": True, "false": False}.get(value.value.strip())
    return None


def attr_text(owner: HasAttributes, key: str) -> Optional[str]:
    """The attribute as text (None for an integer or a boolean)."""
    value = attr(owner, key)
    if isinstance(value, Value_Text):
        return value.value
    return None


def has_status(holder: Holder, status: str) -> bool:
    """Whether the holder carries `status`, e.g. `member:storagergard`."""
    return status in holder.statuses


def age_on(birth: Union[Date, Holder], day: Date) -> int:
    """Whole years between `birth` and `day`: the age on `day` of someone born on
    `birth` (a date, or a holder, whose birth date is taken). Someone born on
    29 February turns a year older on 1 March in common years."""
    if isinstance(birth, Holder):
        birth = birth.birth_date
    had_birthday = (day.month, day.day) >= (birth.month, birth.day)
    return day.year - birth.year - (0 if had_birthday else 1)


def config_int(key: str, default: int) -> int:
    """An integer from the manifest's `[config]`, or `default` when the key is not set.

    The host refuses at load a value that is not of the type declared for the key in
    `[schema.config]`, so only an absent (optional) key gives `default`.
    """
    text = ledger.config(key)
    number = parse_int(text) if text is not None else None
    return default if number is None else number


def config_text(key: str, default: str) -> str:
    """Text from the manifest's `[config]`, or `default` when the key is not set."""
    text = ledger.config(key)
    return default if text is None else text


__all__ = [
    "attr",
    "attr_bool",
    "attr_int",
    "attr_text",
    "age_on",
    "config_int",
    "config_text",
    "has_status",
    "parse_int",
]
