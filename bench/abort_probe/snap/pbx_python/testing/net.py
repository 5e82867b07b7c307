"""Loopback-only address helpers: refuse anything outside 127.0.0.0/8, find free ports."""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

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


def free_loopback_host(
    udp_ports: Iterable[int] = (5060,),
    tcp_ports: Iterable[int] = (5038,),
    candidates: Iterable[int] = range(2, 255),
    exclude: Iterable[str] = (),
) -> str:
    """First 127.0.0.N (N from ``candidates``) whose given UDP and TCP ports are all free."""
    udp, tcp, skip = tuple(udp_ports), tuple(tcp_ports), set(exclude)
    for n in candidates:
        host = f"127.0.0.{n}"
        if host in skip:
            continue
        if all(port_is_free(host, p, socket.SOCK_DGRAM) for p in udp) and all(
            port_is_free(host, p, socket.SOCK_STREAM) for p in tcp
        ):
            return host
    raise RuntimeError("no free loopback address found in 127.0.0.0/8")
