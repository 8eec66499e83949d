"""Value syntaxes: durations, sizes, CPUs, ports and env files."""

from __future__ import annotations

import pytest

from controlplane.compose import units
from controlplane.compose.envfile import EnvFileError, parse_env
from controlplane.compose.ports import parse_port


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), ("0", 0.0), ("1.5s", 1.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert units.duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10x", "s", "", "-5s", "1m 30s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        units.duration(text)


def test_a_bare_number_is_asked_for_its_unit() -> None:
    with pytest.raises(ValueError, match="'10' needs a unit: write 10s for seconds"):
        units.duration("10")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512M", 512 * 1024**2),
        ("1g", 1024**3),
        ("1.5gb", 1536 * 1024**2),
        ("256MiB", 256 * 1024**2),
        ("100", 100),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert units.size(text) == size


def test_cpus_and_integers_from_text() -> None:
    assert units.nano_cpus("0.5") == 500_000_000
    assert units.nano_cpus(2) == 2_000_000_000
    assert units.integer("3") == 3
    with pytest.raises(ValueError, match="'five' is not an integer"):
        units.integer("five")
    with pytest.raises(ValueError, match="-1 is less than 0"):
        units.integer(-1)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (80, [(None, 80, "tcp", "ingress")]),
        ("8080:80", [(8080, 80, "tcp", "ingress")]),
        ("53:53/udp", [(53, 53, "udp", "ingress")]),
        ("9000-9001:80-81", [(9000, 80, "tcp", "ingress"), (9001, 81, "tcp", "ingress")]),
        ({"target": 80, "published": 8080, "mode": "host"}, [(8080, 80, "tcp", "host")]),
        ({"target": "80"}, [(None, 80, "tcp", "ingress")]),
    ],
)
def test_ports(entry: object, expected: list[tuple[int | None, int, str, str]]) -> None:
    ports = parse_port(entry).ports
    assert [(p.published, p.target, p.protocol, p.mode.value) for p in ports] == expected


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("x:80", "is not a port mapping"),
        ("70000:80", "port 70000 is out of range"),
        ("8000-8001:80", "the same length"),
        ({"published": 80}, "needs `target`"),
        ({"target": 80, "mode": "mesh"}, "mode 'mesh' is not one of: ingress, host"),
    ],
)
def test_bad_ports(entry: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_port(entry)


def test_env_file_format() -> None:
    text = "# comment\n\nA=1\nB='quoted value'\nexport C=3\nD=a=b\nFROM_SHELL\nNOT_SET\n"
    assert parse_env(text, {"FROM_SHELL": "x"}) == {
        "A": "1",
        "B": "quoted value",
        "C": "3",
        "D": "a=b",
        "FROM_SHELL": "x",
    }


def test_env_file_bad_line_names_its_line() -> None:
    with pytest.raises(EnvFileError, match=r"app\.env:2: 'not a variable' is not KEY=VALUE"):
        parse_env("A=1\nnot a variable\n", {}, name="app.env")
