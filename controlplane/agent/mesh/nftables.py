"""The mesh's kernel forwarding: the nftables ruleset for one node, and running `nft`.

In kernel mode (`shoal agent --mesh-forwarding kernel`) no byte goes through the agent:
the kernel DNATs `<advertise address>:<published port>` round robin (`numgen inc`) to the
port's running endpoints, as Swarm mode does with IPVS. Each agent owns one table, named
from its advertise address (several agents may share one kernel):

- `prerouting` (clients on other machines) and `output` (clients on this one), both nat
  chains, jump to `ports`: one DNAT rule per forwarded port;
- `input` rejects with a TCP reset a published port that has no running endpoint now
  (connection refused, as the relay's "no backend" is) instead of letting it fall through
  to whatever else listens on the port number;
- `postrouting` masquerades the connections this table DNATed to an endpoint on another
  host, so their replies come back through this node (that needs
  net.ipv4.ip_forward=1).

`render` is a pure function of the table name, the address and the ports; it returns
one `nft -f -` transaction that replaces the whole table atomically (`add table` makes a
missing one, `delete table` drops it and what a killed predecessor left, then the new
content). `Nft` runs such a script as an asyncio subprocess, never blocking the loop.
Conntrack keeps every established connection on the endpoint it was given, so a new
ruleset only moves new connections.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import subprocess
from collections.abc import Mapping, Sequence

Endpoint = tuple[str, int]

NFT = "/usr/sbin/nft"


class NftError(RuntimeError):
    """`nft` is missing, is not allowed to change the ruleset, or refused a script."""


def table_name(address: str) -> str:
    """`shoal_mesh_<address with _>`: one table per agent on a shared kernel."""
    try:
        return "shoal_mesh_" + ipaddress.IPv4Address(address).exploded.replace(".", "_")
    except ValueError:
        raise ValueError(f"kernel mesh forwarding needs an IPv4 address, not {address}") from None


def _dnat(address: str, port: int, endpoints: Sequence[Endpoint]) -> str:
    targets = ", ".join(f"{i} : {host} . {target}" for i, (host, target) in enumerate(endpoints))
    return (
        f"ip daddr {address} tcp dport {port} dnat ip addr . port to "
        f"numgen inc mod {len(endpoints)} map {{ {targets} }}"
    )


def render(table: str, address: str, ports: Mapping[int, Sequence[Endpoint]]) -> str:
    """The transaction that makes `table` forward `address:port` to `ports[port]` (round
    robin), and refuse the ports whose endpoint list is empty."""
    forwarded = sorted(p for p, endpoints in ports.items() if endpoints)
    refused = sorted(p for p, endpoints in ports.items() if not endpoints)
    lines = [
        f"add table ip {table}",
        f"delete table ip {table}",
        f"table ip {table} {{",
        "\tchain prerouting {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
        "\t\tjump ports",
        "\t}",
        "\tchain output {",
        "\t\ttype nat hook output priority -100; policy accept;",
        "\t\tjump ports",
        "\t}",
        "\tchain ports {",
        *(f"\t\t{_dnat(address, p, ports[p])}" for p in forwarded),
        "\t}",
    ]
    if refused:
        lines += [
            "\tchain input {",
            "\t\ttype filter hook input priority filter; policy accept;",
            f"\t\tip daddr {address} tcp dport {{ {', '.join(map(str, refused))} }}"
            " reject with tcp reset",
            "\t}",
        ]
    if forwarded:
        lines += [
            "\tset forwarded {",
            "\t\ttype inet_service",
            f"\t\telements = {{ {', '.join(map(str, forwarded))} }}",
            "\t}",
            "\tchain postrouting {",
            "\t\ttype nat hook postrouting priority srcnat; policy accept;",
            f"\t\tmeta l4proto tcp ct status dnat ct original ip daddr {address}"
            " ct original proto-dst @forwarded fib daddr type != local masquerade",
            "\t}",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_delete(table: str) -> str:
    """The transaction that removes `table`, whether it exists or not."""
    return f"add table ip {table}\ndelete table ip {table}\n"


def check_nft(binary: str = NFT) -> None:
    """Raise `NftError` (a sentence for the user) unless `nft list tables` works here."""
    path = shutil.which(binary)
    if path is None:
        raise NftError(
            f"kernel mesh forwarding needs the nft command ({binary} not found): "
            "install the nftables package, or use --mesh-forwarding relay"
        )
    done = subprocess.run([path, "list", "tables"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NftError(
            "kernel mesh forwarding needs root or CAP_NET_ADMIN to change nftables "
            f"(nft list tables: {_first_line(done.stderr) or done.returncode}); "
            "run the agent with those, or use --mesh-forwarding relay"
        )


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


class Nft:
    """Runs `nft -f -` scripts, one at a time, as asyncio subprocesses."""

    def __init__(self, binary: str = NFT) -> None:
        self.binary = binary
        self._lock = asyncio.Lock()

    async def run(self, script: str) -> None:
        async with self._lock:
            try:
                process = await asyncio.create_subprocess_exec(
                    self.binary,
                    "-f",
                    "-",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                )
            except OSError as exc:
                raise NftError(f"cannot run {self.binary}: {exc}") from exc
            _, stderr = await process.communicate(script.encode())
            if process.returncode != 0:
                raise NftError(f"nft -f - failed: {stderr.decode(errors='replace').strip()}")
