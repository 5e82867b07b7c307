"""A small blocking Asterisk Manager Interface (AMI) client for tests."""
from __future__ import annotations

import itertools
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Union

from .net import require_loopback

#: An AMI message: header -> value; a repeated header's values are joined with "\n".
AmiMessage = dict[str, str]
EventPredicate = Union[Callable[[AmiMessage], bool], str]  # noqa: UP007 - runtime alias, py3.9


class AmiError(RuntimeError):
    """The manager refused an action (``Response: Error``) or the connection failed."""


def parse_message(block: str) -> AmiMessage:
    """Parse one ``Key: value`` block (lines separated by CRLF) into a dict."""
    msg: AmiMessage = {}
    for line in block.split("\r\n"):
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep:  # e.g. raw command output in old versions
            key, value = "Output", line
        key, value = key.strip(), value.strip()
        msg[key] = f"{msg[key]}\n{value}" if key in msg else value
    return msg


def _matcher(predicate: EventPredicate) -> Callable[[AmiMessage], bool]:
    if isinstance(predicate, str):
        name = predicate.lower()
        return lambda ev: ev.get("Event", "").lower() == name
    return predicate


class AmiClient:
    """Blocking AMI connection: logs in on construction; events are queued while waiting for responses."""

    def __init__(self, host: str, port: int = 5038, user: str = "test", secret: str = "test", timeout: float = 10) -> None:
        self.host = require_loopback(host)
        self.port = port
        self.timeout = timeout
        self.sock = socket.create_connection((self.host, port), timeout=timeout)
        self._buf = b""
        self._ids = itertools.count(1)
        self._queue: deque[AmiMessage] = deque()
        self._pending: dict[str, AmiMessage] = {}
        self.banner = self._read_line(timeout)
        resp = self.action("Login", Username=user, Secret=secret, Events="on")
        if resp.get("Response") != "Success":
            self.close()
            raise AmiError(f"AMI login failed: {resp}")

    # -- low level -----------------------------------------------------------------------------

    def _fill(self, deadline: float) -> bool:
        """Read more bytes until ``deadline``; False on timeout. Raises AmiError on EOF."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        if not chunk:
            raise AmiError("AMI connection closed by Asterisk")
        self._buf += chunk
        return True

    def _read_line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self._buf:
            if not self._fill(deadline):
                raise TimeoutError("no AMI banner")
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def _read_message(self, deadline: float) -> AmiMessage | None:
        while b"\r\n\r\n" not in self._buf:
            if not self._fill(deadline):
                return None
        block, self._buf = self._buf.split(b"\r\n\r\n", 1)
        return parse_message(block.decode("utf-8", "replace"))

    def _dispatch(self, msg: AmiMessage) -> None:
        if "Response" in msg and msg.get("ActionID") in self._pending:
            self._pending[msg["ActionID"]] = msg
        else:
            self._queue.append(msg)

    def send(self, name: str, headers: Mapping[str, str | Iterable[str]]) -> str:
        """Send an action without waiting; returns its ActionID. Iterable values repeat the header."""
        action_id = str(headers.get("ActionID") or f"pbxpy-{next(self._ids)}")
        lines = [f"Action: {name}", f"ActionID: {action_id}"]
        for key, value in headers.items():
            if key == "ActionID":
                continue
            values = [value] if isinstance(value, str) else list(value)
            for v in values:
                if "\r" in v or "\n" in v:
                    raise ValueError(f"AMI header {key} contains a line break")
                lines.append(f"{key}: {v}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return action_id

    # -- API -----------------------------------------------------------------------------------

    def action(self, name: str, timeout: float | None = None, **headers: str | Iterable[str]) -> AmiMessage:
        """Send action ``name`` with ``headers`` and return its ``Response`` message."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        action_id = self.send(name, headers)
        self._pending[action_id] = {}
        try:
            while not self._pending[action_id]:
                msg = self._read_message(deadline)
                if msg is None:
                    raise TimeoutError(f"no response to AMI action {name}")
                self._dispatch(msg)
            return self._pending[action_id]
        finally:
            self._pending.pop(action_id, None)

    def action_list(self, name: str, timeout: float | None = None, **headers: str | Iterable[str]) -> list[AmiMessage]:
        """Run an event-list action (e.g. ``CoreShowChannels``) and return its list events
        (without the ``...Complete`` event). Raises AmiError on ``Response: Error``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        resp = self.action(name, timeout=timeout, **headers)
        if resp.get("Response") != "Success":
            raise AmiError(f"{name} failed: {resp}")
        action_id = resp.get("ActionID", "")
        items: list[AmiMessage] = []
        while True:
            ev = self.wait_event(lambda m: m.get("ActionID") == action_id, timeout=max(0.0, deadline - time.monotonic()))
            if ev.get("EventList", "").lower() == "complete":
                return items
            items.append(ev)

    def events(self) -> list[AmiMessage]:
        """All events received so far (reading what is already waiting); the queue is emptied."""
        while True:
            msg = self._read_message(time.monotonic() + 0.05)
            if msg is None:
                break
            self._dispatch(msg)
        out = list(self._queue)
        self._queue.clear()
        return out

    def wait_event(self, predicate: EventPredicate, timeout: float = 10) -> AmiMessage:
        """First queued or new event matching ``predicate`` (callable, or an ``Event`` name);
        it is removed from the queue, others stay. Raises TimeoutError."""
        match = _matcher(predicate)
        for ev in list(self._queue):
            if match(ev):
                self._queue.remove(ev)
                return ev
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_message(deadline)
            if msg is None:
                raise TimeoutError(f"no matching AMI event within {timeout}s")
            if "Response" not in msg and match(msg):
                return msg
            self._dispatch(msg)

    def close(self) -> None:
        """Log off (best effort) and close the socket."""
        if self.sock.fileno() < 0:
            return
        try:
            self.send("Logoff", {})
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> AmiClient:  # noqa: PYI034
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
