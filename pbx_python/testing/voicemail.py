"""app_voicemail in tests: put messages into a mailbox, and read what the prompts played.

A test instance keeps its voicemail in ``<spooldir>/voicemail/<context>/<mailbox>/<folder>``
(file storage, app_voicemail's default). What a caller heard is in the ``full`` log: Asterisk's
file.c logs ``<channel> Playing '<file>.<format>' (language '<lang>')`` for every prompt.
"""
from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .instance import SYSTEM_SOUNDS, AsteriskInstance

#: A prompt played as the body of seeded messages (any GSM file would do).
MESSAGE_SOUND = SYSTEM_SOUNDS / "en" / "beep.gsm"

_PLAYING_RE = re.compile(r"\]\[(?P<call>C-[0-9a-f]+)\] file\.c: <(?P<channel>[^>]+)> Playing "
                         r"'(?P<file>[^']+?)\.(?P<format>[a-z0-9]+)' \(language '(?P<language>[^']*)'\)$",
                         re.M)


@dataclass(frozen=True)
class Prompt:
    """One prompt a channel played."""
    call: str          # the call id ([C-...]) of the log line
    channel: str
    file: str          # e.g. "vm-youhave", "digits/2"
    language: str


def mailbox_dir(inst: AsteriskInstance, mailbox: str, context: str = "default",
                folder: str = "INBOX") -> Path:
    """``<spooldir>/voicemail/<context>/<mailbox>/<folder>`` of ``inst``."""
    return inst.spooldir / "voicemail" / context / mailbox / folder


def seed_messages(inst: AsteriskInstance, mailbox: str, count: int, context: str = "default",
                  folder: str = "INBOX", caller: str = "\"Demo\" <1001>") -> Path:
    """Put ``count`` messages (msg0000 ..) into a mailbox folder of ``inst``, as app_voicemail
    writes them (an .txt envelope and a .gsm recording). Returns the folder."""
    where = mailbox_dir(inst, mailbox, context, folder)
    where.mkdir(parents=True, exist_ok=True)
    now = int(time.time())
    for n in range(count):
        name = where / f"msg{n:04d}"
        shutil.copyfile(MESSAGE_SOUND, name.with_suffix(".gsm"))
        name.with_suffix(".txt").write_text(
            ";\n; Message Information file\n;\n[message]\n"
            f"origmailbox={mailbox}\ncontext=demo\nmacrocontext=\nexten=s\nrdnis=unknown\n"
            f"priority=1\ncallerchan=PJSIP/phones-{n:08x}\ncallerid={caller}\n"
            f"origdate={time.strftime('%a %b %d %I:%M:%S %p UTC %Y', time.gmtime(now))}\n"
            f"origtime={now}\ncategory=\nmsg_id={now}-{n:08x}\nflag=\nduration=1\n")
    return where


def prompts(log_text: str, call: str | None = None) -> list[Prompt]:
    """The prompts played in ``log_text``, in order (only call ``call``'s if given)."""
    found = [Prompt(m.group("call"), m.group("channel"), m.group("file"), m.group("language"))
             for m in _PLAYING_RE.finditer(log_text)]
    return [p for p in found if call is None or p.call == call]
