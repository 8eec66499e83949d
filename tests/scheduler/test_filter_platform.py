from __future__ import annotations

import pytest
from scheduler_helpers import node, request

from scheduler import Platform
from scheduler.filters.platform import PlatformFilter

CASES = [
    # (node platform, accepted platforms, passes)
    (("linux", "amd64"), [], True),
    (("linux", "amd64"), [("linux", "amd64")], True),
    (("linux", "x86_64"), [("linux", "amd64")], True),
    (("linux", "aarch64"), [("linux", "arm64")], True),
    (("linux", "arm64"), [("linux", "amd64")], False),
    (("linux", "arm64"), [("linux", "amd64"), ("linux", "arm64")], True),
    (("windows", "amd64"), [("linux", "amd64")], False),
    (("Linux", "amd64"), [("linux", "")], True),  # empty arch: any
    (("windows", "arm64"), [("", "arm64")], True),
]


@pytest.mark.parametrize(("platform", "accepted", "passes"), CASES)
def test_platform_filter(
    platform: tuple[str, str], accepted: list[tuple[str, str]], passes: bool
) -> None:
    view = node(platform=Platform(*platform))
    wants = request(platforms=[Platform(*p) for p in accepted])
    assert PlatformFilter().check(wants, view) is passes


def test_platform_explain() -> None:
    wants = request(platforms=[Platform("linux", "amd64"), Platform("linux", "")])
    assert (
        PlatformFilter().explain(wants, 2) == "2 nodes do not match platform linux/amd64, linux/*"
    )
