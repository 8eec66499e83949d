"""The PROXY protocol's version 1 header: tells a backend who the client really is.

A forwarded connection reaches the backend from the mesh's address, so a backend logs
the node, not the client. With `--mesh-proxy-protocol` the mesh sends, before any of the
client's bytes, one line of HAProxy's PROXY protocol version 1 (the text form):

    PROXY TCP4 <client ip> <address the client reached> <client port> <that port>\\r\\n

Backends that understand it (nginx `listen ... proxy_protocol`, HAProxy `accept-proxy`,
Traefik, Envoy) read the line and see the client's address. Version 1 is the text
version: every such server reads it and a human can read it in a capture; version 2
(binary) adds nothing the mesh needs.
"""

from __future__ import annotations

import ipaddress

#: The longest a version 1 header may be, "\r\n" included (the specification's limit).
MAX_V1_LENGTH = 107


def proxy_v1_header(client: tuple[str, int] | None, reached: tuple[str, int] | None) -> bytes:
    """The header for a client at `client` that connected to `reached` (host, port).

    Addresses of mixed or unknown families give `PROXY UNKNOWN`, which the
    specification allows when the sender cannot tell.
    """
    if client is None or reached is None:
        return b"PROXY UNKNOWN\r\n"
    try:
        source = ipaddress.ip_address(client[0])
        destination = ipaddress.ip_address(reached[0])
    except ValueError:
        return b"PROXY UNKNOWN\r\n"
    if source.version != destination.version:
        return b"PROXY UNKNOWN\r\n"
    family = "TCP4" if source.version == 4 else "TCP6"
    line = f"PROXY {family} {source} {destination} {client[1]} {reached[1]}\r\n"
    return line.encode("ascii")
