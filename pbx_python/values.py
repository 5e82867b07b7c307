"""Python values -> the C strings Asterisk holds, checked where the user's code passes them.

One conversion table serves variable values (`Channel.set_var`, `ChannelRef.set_var`,
`func_write`) and function results:

| Python value | becomes |
|---|---|
| `str` | UTF-8; `\\udc80`-`\\udcff` (surrogate escapes of undecodable bytes) become those bytes |
| `bytes`, `bytearray` | as is |
| `bool` | `"1"` / `"0"` (so `GotoIf(${F()}?yes:no)` branches as Python meant) |
| `int` | decimal |
| `float` | `repr()`: `1.5`, `1e+100`, `nan`, `inf` |
| anything else | `TypeError` |

A NUL character, or a surrogate that is not a surrogate escape, cannot reach Asterisk unchanged:
`ValueError`. Names (variables, functions, applications) must be non-empty `str`. A `str`
subclass is taken as the plain string it holds (its own methods are not called).

Lengths: names, function expressions, templates, application data and the value written to a
function (a name ending in ')') are at most MAX_DIALPLAN_TEXT bytes, the most the dialplan itself
can pass (Asterisk's substitution buffer): Asterisk copies them onto the channel thread's small
stack, so a longer one would overflow it. Longer ones raise `ValueError`. A plain variable's value
has no limit.
"""
from __future__ import annotations

from typing import Any

NUL_MESSAGE = "a NUL character cannot be passed to Asterisk"

#: EXT_DATA_SIZE - 1 (main/pbx.c): the longest application data or expression the dialplan passes.
MAX_DIALPLAN_TEXT = 8191


def _check_length(data: bytes, what: str) -> bytes:
    if len(data) > MAX_DIALPLAN_TEXT:
        raise ValueError(f"{what} is {len(data)} bytes; Asterisk takes at most "
                         f"{MAX_DIALPLAN_TEXT} (as from the dialplan)")
    return data


def text_bytes(text: Any, what: str, limit: bool = True) -> bytes:
    """A str argument (a name, an expression, application data) as C string bytes, at most
    MAX_DIALPLAN_TEXT of them unless `limit` is False."""
    if type(text) is not str:
        if not isinstance(text, str):
            raise TypeError(f"{what} must be a str, not {type(text).__name__}")
        text = str.__str__(text)     # the plain string: a subclass's __contains__/encode ignored
    if "\0" in text:
        raise ValueError(f"{what}: {NUL_MESSAGE}")
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} holds {text[exc.start]!r} at index {exc.start}, a lone "
                         "surrogate that is not valid text (only \\udc80-\\udcff, the escapes of "
                         "undecodable bytes, can be passed)") from None
    return _check_length(data, what) if limit else data


def name_bytes(name: Any, what: str = "a variable name") -> bytes:
    """A non-empty name as C string bytes."""
    data = text_bytes(name, what)
    if not data:
        raise ValueError(f"{what} cannot be empty")
    return data


def value_bytes(value: Any, what: str = "a value", limit: bool = False) -> bytes:
    """A value as C string bytes, by the table above (None is the caller's business); at most
    MAX_DIALPLAN_TEXT bytes when `limit` (a value written to a function)."""
    if isinstance(value, str):
        return text_bytes(value, what, limit)
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int):
        return int.__repr__(value).encode()          # an IntEnum gives its number too
    if isinstance(value, float):
        return float.__repr__(value).encode()
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
        if b"\0" in data:
            raise ValueError(f"{what}: {NUL_MESSAGE}")
        return _check_length(data, what) if limit else data
    raise TypeError(f"{what} must be str, bytes, int, float or bool, not {type(value).__name__}")


def assignment(name: Any, value: Any) -> str:
    """The deferred assignment "name\0value\0" of a checked name and value (not None), as a
    str that encodes (UTF-8, surrogateescape) to exactly the bytes Asterisk gets."""
    key = name_bytes(name).decode("utf-8", "surrogateescape")
    data = value_bytes(value, f"the value of {key}", key.endswith(")")).decode(
        "utf-8", "surrogateescape")
    return f"{key}\0{data}\0"
