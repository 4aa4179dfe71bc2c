"""How errors show what a user gave: a value cut to a readable length, its control characters escaped,
and a look-alike's character outside ASCII named (names here are ASCII slugs, so it is another name)."""

from __future__ import annotations

import unicodedata
from collections.abc import Sized

__all__ = ["shown"]


def shown(value: object, limit: int = 100) -> str:
    """`value` as an error names it: its repr, cut after `limit` characters with its length said, and the
    first character outside ASCII of a string named."""
    if isinstance(value, str):
        said = repr(value[:limit]) + (f"... ({len(value):,} characters)" if len(value) > limit else "")
        odd = next((c for c in value if not c.isascii()), None)
        if odd is not None:
            said += f" (its {odd!r} is U+{ord(odd):04X} {unicodedata.name(odd, 'unnamed')}, not ASCII)"
        return said
    text = repr(value)
    if len(text) <= limit:
        return text
    return text[:limit] + (f"... ({len(value):,} items)" if isinstance(value, Sized) else "...")
