"""Loopback-only address helpers: refuse anything outside 127.0.0.0/8, find free ports."""
from __future__ import annotations

import fcntl
import ipaddress
import os
import random
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

LOOPBACK_NET = ipaddress.ip_network("127.0.0.0/8")


def require_loopback(host: str) -> str:
    """Return ``host`` if it is an IPv4 address inside 127.0.0.0/8, else raise ValueError."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address; only 127.0.0.0/8 loopback addresses are allowed") from None
    if addr.version != 4 or addr not in LOOPBACK_NET:
        raise ValueError(f"{host} is not in 127.0.0.0/8; the test helpers only bind and send on loopback")
    return str(addr)


def loopback_network(net: str | ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    """``net`` ("127.0.3.0/24", "127.1.0.0/16", a single "127.0.0.9") as a network inside
    127.0.0.0/8, else ValueError."""
    try:
        network = ipaddress.ip_network(net, strict=False)
    except ValueError:
        raise ValueError(f"{net!r} is not an IPv4 network; only ranges inside 127.0.0.0/8 are allowed") from None
    if network.version != 4 or not network.subnet_of(LOOPBACK_NET):  # type: ignore[arg-type]
        raise ValueError(f"{net} is not inside 127.0.0.0/8; the test helpers only bind and send on loopback")
    return network  # type: ignore[return-value]


def last_octet(host: str) -> int:
    """The last octet of a loopback IPv4 address (used to spread per-instance port ranges)."""
    return int(require_loopback(host).rsplit(".", 1)[1])


def port_is_free(host: str, port: int, kind: int = socket.SOCK_DGRAM) -> bool:
    """True if ``host:port`` can be bound right now for the given socket type."""
    require_loopback(host)
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str, kind: int = socket.SOCK_DGRAM) -> int:
    """An ephemeral port that is free on ``host`` for the given socket type (racy, but fine for tests)."""
    require_loopback(host)
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


#: Where processes using these helpers mark the addresses their instances hold (one flock'd file
#: per address), so concurrent test runs on one machine do not pick the same address.
CLAIM_DIR = Path(os.environ.get("PBX_PYTHON_CLAIM_DIR") or Path(tempfile.gettempdir()) / "pbx-python-hosts")
_claims: dict[str, int] = {}


def claim_host(host: str) -> bool:
    """Mark ``host`` as used by this process until :func:`release_host` (or the process ends).
    False if another process holds it. Advisory: only processes using these helpers look."""
    host = require_loopback(host)
    if host in _claims:
        return True
    CLAIM_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(CLAIM_DIR / host, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _claims[host] = fd
    return True


def release_host(host: str) -> None:
    """Drop this process's claim on ``host`` (no-op if it has none)."""
    fd = _claims.pop(host, None)
    if fd is not None:
        os.close(fd)


def _hosts(network: ipaddress.IPv4Network, shuffle: bool = False) -> Iterator[str]:
    """Usable addresses of ``network`` in order (all of them for a /31 or /32); ``shuffle``
    starts at a random one and wraps around."""
    first, last = int(network.network_address), int(network.broadcast_address)
    if network.prefixlen < 31:
        first, last = first + 1, last - 1
    count = last - first + 1
    start = random.randrange(count) if shuffle else 0
    return (str(ipaddress.IPv4Address(first + (start + i) % count)) for i in range(count))


def free_loopback_host(
    udp_ports: Iterable[int] = (5060,),
    tcp_ports: Iterable[int] = (5038,),
    candidates: Iterable[int | str] | None = None,
    exclude: Iterable[str] = (),
    network: str | ipaddress.IPv4Network | None = None,
    claim: bool = True,
    shuffle: bool = False,
) -> str:
    """First loopback address whose given UDP and TCP ports are all free.

    Searched, in order: ``network`` (any range inside 127.0.0.0/8, e.g. "127.0.3.0/24" or
    "127.42.0.0/16", its host addresses in ascending order), or ``candidates`` (each an address
    string anywhere in 127.0.0.0/8, or an int N meaning 127.0.0.N), or by default 127.0.0.2-254.
    Addresses in ``exclude`` are skipped. ``claim`` (default): also skip addresses other
    processes using these helpers have claimed (:func:`claim_host`), and claim the one returned
    for this process (the ``asterisk_factory`` fixture releases its instances' addresses at
    teardown; this process can always reuse its own). ``shuffle``: start at a random place in
    the order (concurrent runs then rarely race for the same first address).
    """
    if network is not None and candidates is not None:
        raise ValueError("give network= or candidates=, not both")
    hosts: Iterable[str]
    if network is not None:
        hosts = _hosts(loopback_network(network), shuffle)
    else:
        listed = [f"127.0.0.{c}" if isinstance(c, int) else c
                  for c in (range(2, 255) if candidates is None else candidates)]
        cut = random.randrange(len(listed)) if shuffle and listed else 0
        hosts = listed[cut:] + listed[:cut]
    udp, tcp = tuple(udp_ports), tuple(tcp_ports)
    skip = {require_loopback(h) for h in exclude}
    searched = 0
    for host in hosts:
        host = require_loopback(host)
        searched += 1
        if host in skip:
            continue
        claimed_now = False
        if claim and host not in _claims:
            if not claim_host(host):
                continue                  # another process's instance has it
            claimed_now = True
        if all(port_is_free(host, p, socket.SOCK_DGRAM) for p in udp) and all(
            port_is_free(host, p, socket.SOCK_STREAM) for p in tcp
        ):
            return host
        if claimed_now:
            release_host(host)
    where = f"in {network}" if network is not None else "among the candidates"
    raise RuntimeError(f"no free loopback address {where} ({searched} searched, UDP {udp}, TCP {tcp} busy)")
