"""Operating-system limits that decide how many sockets one process can hold."""

from __future__ import annotations

import ipaddress
import resource
import socket
from urllib.parse import urlsplit

# Linux: bind() picks no port until connect(), so the (source, destination) pair decides port
# reuse instead of the source address alone. Not exported by every Python's socket module.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

# One source address gives ~28,000 ephemeral ports (32768-60999) towards one destination; 64
# loopback addresses cover far more sockets than a machine's fd limits allow.
AUTO_SOURCE_COUNT = 64


def raise_nofile_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (raising the hard limit needs privileges we lack)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft, hard


def target_host_port(ws_url: str) -> tuple[str, int]:
    parts = urlsplit(ws_url)
    default = 443 if parts.scheme == "wss" else 80
    return parts.hostname or "127.0.0.1", parts.port or default


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_source_addresses(spec: str) -> list[str]:
    """'127.0.0.2-127.0.0.40,127.0.1.5' -> the listed IPv4 addresses."""
    out: list[str] = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        if "-" in item:
            first, last = (ipaddress.IPv4Address(x) for x in item.split("-", 1))
            out.extend(str(ipaddress.IPv4Address(i)) for i in range(int(first), int(last) + 1))
        else:
            out.append(str(ipaddress.IPv4Address(item)))
    return out


def default_source_addresses(ws_url: str) -> list[str]:
    """127.0.0.2..65 when the target is on loopback (any 127/8 address is ours to bind), else none:
    towards a remote target the kernel's own choice of source address is the only valid one."""
    host, _ = target_host_port(ws_url)
    if not is_loopback(host):
        return []
    return [f"127.0.0.{i}" for i in range(2, 2 + AUTO_SOURCE_COUNT)]


def new_socket(family: int, source: str | None) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if source:
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        except OSError:
            pass  # not Linux: bind reserves a port per source address, which still spreads them
        sock.bind((source, 0))
    return sock
