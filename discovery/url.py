"""Parsing discovery URLs: `scheme://[user:password@]host:port[,host:port...]/prefix?opts`.

A URL names the store and the cluster inside it (the prefix). Parsing is strict and
every error is one line naming the problem, because a typo here otherwise shows up as
a hang or a connection error far from its cause.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from discovery.errors import InvalidStoreURL

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.\-/]+$")


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A parsed discovery URL. `path` is the file store's path; `prefix` the cluster's."""

    raw: str
    scheme: str
    endpoints: tuple[Endpoint, ...] = ()
    prefix: str = ""
    path: str = ""
    username: str | None = None
    password: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    def option(self, name: str, default: str | None = None) -> str | None:
        return self.options.get(name, default)

    def redacted(self) -> str:
        """The URL with any password or token replaced, for logs and errors."""
        text = self.raw
        if self.password:
            text = text.replace(f":{self.password}@", ":***@")
        for secret in ("token", "password"):
            value = self.options.get(secret)
            if value:
                text = text.replace(value, "***")
        return text


def scheme_of(url: str) -> str:
    if "://" not in url:
        raise InvalidStoreURL(
            f"discovery URL {url!r} has no scheme: write it as etcd://host:2379/prefix, "
            "consul://host:8500/prefix or file:///path/to/dir"
        )
    scheme = url.split("://", 1)[0].lower()
    if not _SCHEME.match(scheme):
        raise InvalidStoreURL(f"discovery URL {url!r}: {scheme!r} is not a valid scheme")
    return scheme


def parse_network_url(url: str, *, default_port: int) -> StoreURL:
    """Parse a URL of a networked store: one or more host:port endpoints and a prefix."""
    scheme = scheme_of(url)
    parts = urlsplit(url)
    netloc = parts.netloc
    username: str | None = None
    password: str | None = None
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) or None
    if not netloc:
        raise InvalidStoreURL(f"discovery URL {url!r} names no host")
    endpoints = tuple(_endpoint(url, item, default_port) for item in netloc.split(","))
    prefix = parts.path.strip("/")
    if not prefix:
        raise InvalidStoreURL(
            f"discovery URL {url!r} has an empty prefix: add the cluster's path, "
            f"as in {scheme}://{netloc}/shoal"
        )
    if not _PREFIX.match(prefix):
        raise InvalidStoreURL(
            f"discovery URL {url!r}: prefix {prefix!r} may contain only letters, digits, "
            "'_', '.', '-' and '/'"
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    return StoreURL(
        raw=url,
        scheme=scheme,
        endpoints=endpoints,
        prefix=prefix,
        username=username,
        password=password,
        options=options,
    )


def _endpoint(url: str, item: str, default_port: int) -> Endpoint:
    if not item:
        raise InvalidStoreURL(f"discovery URL {url!r} has an empty host in its host list")
    if item.startswith("["):  # an IPv6 address: [::1]:2379
        host, _, rest = item[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise InvalidStoreURL(f"discovery URL {url!r} names no host before ':{port_text}'")
    if not port_text:
        return Endpoint(host, default_port)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidStoreURL(
            f"discovery URL {url!r}: port {port_text!r} of host {host!r} is not a "
            "number from 1 to 65535"
        )
    return Endpoint(host, int(port_text))


def parse_file_url(url: str) -> StoreURL:
    """`file:///var/lib/shoal/cluster`: a directory holding the store's database."""
    scheme = scheme_of(url)
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise InvalidStoreURL(
            f"discovery URL {url!r}: a file store is local; write file:///absolute/path "
            f"(three slashes), not a host {parts.netloc!r}"
        )
    path = unquote(parts.path)
    if not path or path == "/":
        raise InvalidStoreURL(f"discovery URL {url!r} names no directory")
    return StoreURL(
        raw=url,
        scheme=scheme,
        path=path,
        prefix="",
        options=dict(parse_qsl(parts.query, keep_blank_values=True)),
    )
