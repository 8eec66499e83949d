"""Discovery URLs: good ones parse into endpoints and a prefix; bad ones get one line
that names the problem, before anything tries to connect."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from discovery import DuplicateScheme, InvalidStoreURL, UnknownScheme, open_store
from discovery.registry import known_schemes
from discovery.url import Endpoint, parse_file_url, parse_network_url


def test_several_endpoints_prefix_credentials_and_options() -> None:
    url = parse_network_url(
        "etcd://root:s3cret@h1:2379,h2,[::1]:2380/shoal/prod?ca=/ca.pem", default_port=2379
    )
    assert url.endpoints == (Endpoint("h1", 2379), Endpoint("h2", 2379), Endpoint("::1", 2380))
    assert url.prefix == "shoal/prod"
    assert (url.username, url.password) == ("root", "s3cret")
    assert url.option("ca") == "/ca.pem"
    assert "s3cret" not in url.redacted()


def test_file_url_is_a_directory_path() -> None:
    url = parse_file_url("file:///var/lib/shoal/cluster")
    assert url.path == "/var/lib/shoal/cluster"


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("zookeeper://h:2181/shoal", "unknown discovery scheme 'zookeeper'"),
        ("h1:2379/shoal", "has no scheme"),
        ("etcd:///shoal", "names no host"),
        ("etcd://h1:notaport/shoal", "port 'notaport'"),
        ("etcd://h1:70000/shoal", "port '70000'"),
        ("etcd://h1:2379", "empty prefix"),
        ("consul://h1:8500/", "empty prefix"),
        ("etcd://h1:2379,,h2/shoal", "empty host"),
        ("consul://:8500/shoal", "names no host"),
        ("etcd://h1:2379/sho al", "may contain only"),
        ("file://somehost/var/lib/shoal", "a file store is local"),
        ("file://", "names no directory"),
        ("memory://", "names no store"),
    ],
)
async def test_bad_urls_get_one_line_naming_the_problem(url: str, names: str) -> None:
    with pytest.raises(InvalidStoreURL) as err:
        await open_store(url)
    message = str(err.value)
    assert names in message
    assert "\n" not in message


async def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(UnknownScheme) as err:
        await open_store("redis://h:6379/shoal")
    for scheme in ("etcd://", "consul://", "file://"):
        assert scheme in str(err.value)


@pytest.fixture
def plugin_dist(tmp_path: Path) -> Iterator[Path]:
    """A third-party distribution on sys.path, found by importlib.metadata."""
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("shoal_test_plugin")]:
        del sys.modules[name]


def write_plugin(root: Path, entry_points: str) -> None:
    info = root / "shoal_test_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shoal-test-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    (root / "shoal_test_plugin.py").write_text(
        textwrap.dedent(
            """
            from discovery.backends.memory import MemoryStore

            class EchoStore(MemoryStore):
                scheme = "echo"

                @classmethod
                async def open(cls, url):
                    return cls("echo-" + url.split("://", 1)[1])
            """
        )
    )


async def test_third_party_backend_from_an_entry_point(plugin_dist: Path) -> None:
    write_plugin(plugin_dist, "[shoal.discovery]\necho = shoal_test_plugin:EchoStore\n")
    assert known_schemes()["echo"] == "shoal_test_plugin:EchoStore"
    async with await open_store("echo://cluster-a") as store:
        await store.put("k", b"v")
        kv = await store.get("k")
        assert kv is not None
        assert kv.value == b"v"
        assert type(store).__name__ == "EchoStore"


async def test_a_scheme_claimed_twice_is_an_error(plugin_dist: Path) -> None:
    write_plugin(plugin_dist, "[shoal.discovery]\netcd = shoal_test_plugin:EchoStore\n")
    with pytest.raises(DuplicateScheme, match="claimed twice"):
        await open_store("etcd://h:2379/shoal")
