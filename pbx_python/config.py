"""The meaning of pbx_python.conf.

Asterisk's own parser reads the file (templates, #include and all); the C side hands Python the
result as (category, key, value) triples in file order, and this module interprets them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

ON_EXCEPTION_CHOICES = ("hangup", "continue")
GIL_SPIN_DEFAULT, GIL_SPIN_MAX = 20, 1000   # µs; the C side has the same bounds


class ConfigError(ValueError):
    """pbx_python.conf says something that cannot be used."""


@dataclass
class Config:
    python: str = ""                     # read by the C side before Python starts
    paths: list[str] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    on_exception: str = "hangup"
    gil_spin: int = GIL_SPIN_DEFAULT     # µs; read by the C side (gil_wait() in pbx_python.c)
    sections: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def section(self, name: str) -> list[tuple[str, str]]:
        """All key/value pairs of a section, in file order (empty if absent)."""
        return list(self.sections.get(name.lower(), []))


def _split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def parse(items: Iterable[tuple[str, str, str]]) -> Config:
    """Build a Config from (category, key, value) triples."""
    config = Config()
    for category, key, value in items:
        category_l = category.lower()
        config.sections.setdefault(category_l, []).append((key, value))
        if category_l != "general":
            continue
        key_l = key.lower()
        if key_l == "python":
            config.python = value.strip()
        elif key_l == "path":
            config.paths.extend(_split_list(value))
        elif key_l in ("modules", "module"):
            config.modules.extend(_split_list(value))
        elif key_l == "on_exception":
            choice = value.strip().lower()
            if choice not in ON_EXCEPTION_CHOICES:
                raise ConfigError(f"[general] on_exception = {value!r}: expected one of "
                                  f"{', '.join(ON_EXCEPTION_CHOICES)}")
            config.on_exception = choice
        elif key_l == "gil_spin":
            text = value.strip()
            if not (text.isdigit() and text.isascii() and int(text) <= GIL_SPIN_MAX):
                raise ConfigError(f"[general] gil_spin = {value!r}: expected microseconds, "
                                  f"0 to {GIL_SPIN_MAX} (0: never spin)")
            config.gil_spin = int(text)
        else:
            raise ConfigError(f"[general] unknown setting {key!r} (known: python, path, modules, "
                              "on_exception, gil_spin)")
    for name in config.modules:
        if not all(part.isidentifier() for part in name.split(".")):
            raise ConfigError(f"[general] modules: {name!r} is not a Python module name")
    seen: set[str] = set()
    duplicates = [m for m in config.modules if m in seen or seen.add(m)]  # type: ignore[func-returns-value]
    if duplicates:
        raise ConfigError(f"[general] modules: listed more than once: {', '.join(duplicates)}")
    return config
