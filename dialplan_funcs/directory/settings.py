"""Parse the ``[directory]`` section of pbx_python.conf (pure Python).

    source    file (default) | postgresql
    file      the directory file; relative paths are taken from Asterisk's config dir
              (astetcdir). Default: cluster_directory.conf
    dsn       libpq connection string (postgresql; required then)
    refresh   seconds between full reloads from PostgreSQL (besides NOTIFY), default 30,
              from 1 to 86400
    snapshot  where the PostgreSQL snapshot is kept; relative paths are taken from Asterisk's
              data dir (astdatadir). Default: <astdatadir>/pbx_python/directory.json

Unknown or repeated keys are errors (a typo must not silently change routing); all problems
are reported together in one DirectorySettingsError.
"""
from __future__ import annotations

import math
import os
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field

SOURCES = ("file", "postgresql")
DEFAULT_FILE = "cluster_directory.conf"
DEFAULT_REFRESH = 30.0
MIN_REFRESH = 1.0
MAX_REFRESH = 86400.0
DEFAULT_SNAPSHOT = os.path.join("pbx_python", "directory.json")
_KEYS = ("source", "file", "dsn", "refresh", "snapshot")
_SECONDS_RE = re.compile(r"[0-9]+(\.[0-9]+)?")
_PASSWORD_RE = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)", re.IGNORECASE)
_URI_PASSWORD_RE = re.compile(r"^(postgres(?:ql)?://[^:/@]*):[^@]*@", re.IGNORECASE)


class DirectorySettingsError(ValueError):
    """The [directory] section is invalid; ``errors`` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid [directory] settings: " + "; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class DirectorySettings:
    source: str = "file"
    file: str = DEFAULT_FILE          # absolute once parsed
    dsn: str = field(default="", repr=False)
    refresh: float = DEFAULT_REFRESH
    snapshot: str = ""                # absolute once parsed

    @property
    def safe_dsn(self) -> str:
        """The DSN with any password removed (for logs and the CLI)."""
        return redact_dsn(self.dsn)

    @property
    def location(self) -> str:
        return self.file if self.source == "file" else self.safe_dsn


def redact_dsn(dsn: str) -> str:
    """A libpq connection string (key=value or URI) with the password shown as ***."""
    text = _PASSWORD_RE.sub(r"\1***", dsn)
    return _URI_PASSWORD_RE.sub(r"\1:***@", text)


def redact_error(message: str, dsn: str) -> str:
    """An error message about ``dsn`` with any password of the DSN, whole or any blank-separated
    part of it, raw or percent-decoded, shown as *** (libpq quotes pieces of a malformed DSN)."""
    secrets: set[str] = set()
    for m in _PASSWORD_RE.finditer(dsn):
        value = m.group(2)
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        secrets.add(value)
    m = re.match(r"postgres(?:ql)?://[^:/@]*:([^@]*)@", dsn, re.IGNORECASE)
    if m:
        secrets.add(m.group(1))
    secrets |= {urllib.parse.unquote(s) for s in secrets}
    secrets |= {part for s in secrets for part in s.split()}
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 3:        # shorter is no secret, and would garble the message
            message = message.replace(secret, "***")
    # what a malformed password= leaves after its first blank ("password=se cret": "cret")
    for m in re.finditer(r"password\s*=\s*\S*\s+(\S+)", dsn, re.IGNORECASE):
        if len(m.group(1)) >= 3 and "=" not in m.group(1):
            message = message.replace(m.group(1), "***")
    return message


def parse_settings(pairs: Iterable[tuple[str, str]], config_dir: str,
                   data_dir: str) -> DirectorySettings:
    """Validate the section's (key, value) pairs; paths made absolute against Asterisk's
    config dir (``file``) and data dir (``snapshot``)."""
    errors: list[str] = []
    values: dict[str, str] = {}
    for raw_key, raw_value in pairs:
        key, value = raw_key.strip().lower(), raw_value.strip()
        if key not in _KEYS:
            errors.append(f"unknown key {raw_key.strip()!r} (known: {', '.join(_KEYS)})")
        elif key in values:
            errors.append(f"key {key!r} is given more than once")
        else:
            values[key] = value
    source = values.get("source", "file").lower() or "file"
    if source not in SOURCES:
        errors.append(f"source {values['source']!r}: expected one of {', '.join(SOURCES)}")
    file = values.get("file", DEFAULT_FILE) or DEFAULT_FILE
    dsn = values.get("dsn", "")
    if source == "postgresql" and not dsn:
        errors.append("source = postgresql needs dsn (a libpq connection string)")
    refresh = DEFAULT_REFRESH
    if "refresh" in values:
        raw = values["refresh"]
        # at least a second: each full reload reads the whole table and rewrites the snapshot
        # (a typo like 0.03 would reload 30 times a second, for ever)
        if not _SECONDS_RE.fullmatch(raw) or not MIN_REFRESH <= float(raw) <= MAX_REFRESH \
                or not math.isfinite(float(raw)):
            errors.append(f"refresh {raw!r} must be a number of seconds from {MIN_REFRESH:g} "
                          f"to {MAX_REFRESH:g}")
        else:
            refresh = float(raw)
    snapshot = values.get("snapshot", "") or DEFAULT_SNAPSHOT
    if errors:
        raise DirectorySettingsError(errors)
    return DirectorySettings(source=source, file=os.path.join(config_dir, file), dsn=dsn,
                             refresh=refresh, snapshot=os.path.join(data_dir, snapshot))
