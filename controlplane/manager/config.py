"""A manager's settings: where the store is, where to listen, how long leases last."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field

from controlplane.tls import TlsError, TlsFiles, server_context

DEFAULT_LISTEN = "127.0.0.1:2377"
DEFAULT_LEASE_TTL = 10.0


class ConfigError(ValueError):
    """A setting that cannot work; the message names the option and a valid example."""


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int  # 0: let the system choose

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        """`127.0.0.1:2377`, `:2377`, `[::1]:2377`."""
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port_text = rest.removeprefix(":")
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise ConfigError(f"--listen {text!r}: write HOST:PORT, e.g. 127.0.0.1:2377")
        if not port_text.isdigit() or not 0 <= int(port_text) < 65536:
            raise ConfigError(f"--listen {text!r}: the port must be a number from 0 to 65535")
        return cls(host=host or "0.0.0.0", port=int(port_text))


@dataclass(frozen=True, slots=True)
class ManagerConfig:
    discovery: str
    listen: ListenAddress = ListenAddress("127.0.0.1", 2377)
    advertise_url: str | None = None  # None: derived from the address actually bound
    lease_ttl: float = DEFAULT_LEASE_TTL
    manager_id: str | None = None  # None: a fresh id per process
    docker_api: str | None = None  # HOST:PORT of the Docker Engine API; None: not served
    tls: TlsFiles = field(default_factory=TlsFiles)  # --tlscert/--tlskey[/--tlscacert]

    def tls_context(self) -> ssl.SSLContext | None:
        """Both listeners' TLS (None: plain HTTP); `ConfigError` naming the option."""
        try:
            return server_context(self.tls)
        except TlsError as exc:
            raise ConfigError(str(exc)) from None

    def docker_api_address(self) -> ListenAddress | None:
        """Where `--docker-api` listens; `ConfigError` naming the option when malformed."""
        if not self.docker_api:
            return None
        try:
            return ListenAddress.parse(self.docker_api)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("--listen", "--docker-api", 1)) from None

    def api_url(self, bound_port: int) -> str:
        """The URL others use to reach this manager's API."""
        if self.advertise_url:
            return self.advertise_url.rstrip("/")
        host = self.listen.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.getfqdn()
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.tls.cert else "http"
        return f"{scheme}://{host}:{bound_port}"
