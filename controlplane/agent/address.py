"""The address a node advertises by default: the host's first non-loopback IPv4 address.

Managers and other nodes reach a node's published ports at this address, so loopback
is a poor default on a real cluster; it is used only when the host has nothing else.
Several agents on one machine (tests, demos) pass `--advertise-addr 127.0.0.N` instead.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

_SIOCGIFADDR = 0x8915  # Linux: get an interface's IPv4 address


def interface_addresses() -> list[str]:
    """The IPv4 address of each interface that has one, in interface index order."""
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in sorted(socket.if_nameindex()):
            request = struct.pack("256s", name.encode()[:15])
            try:
                reply = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
            except OSError:
                continue  # down, or no IPv4 address
            found.append(socket.inet_ntoa(reply[20:24]))
    return found


def default_advertise_addr() -> str:
    """The first non-loopback IPv4 address of this host, or 127.0.0.1 if it has none."""
    try:
        candidates = interface_addresses()
    except OSError:
        candidates = []
    for addr in candidates:
        if not ipaddress.ip_address(addr).is_loopback:
            return addr
    return "127.0.0.1"
