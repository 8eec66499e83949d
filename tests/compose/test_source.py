"""Reading YAML: lines kept, YAML 1.2 scalars, duplicate keys refused."""

from __future__ import annotations

import pytest

from controlplane.compose import ComposeError
from controlplane.compose.source import locate, parse

TEXT = """\
services:
  web:
    image: nginx
    ports:
      - 22:22
      - "8080:80"
    environment:
      COUNTRY: no
      ENABLED: yes
      MODE: 0755
      OCTAL: 0o17
      EMPTY:
      REAL: true
      DAY: 2024-01-01
"""


def test_scalars_follow_yaml_1_2_like_docker() -> None:
    web = parse(TEXT, name="c.yml")["services"]["web"]
    assert web["ports"] == ["22:22", "8080:80"]  # YAML 1.1 would read 22:22 as 1342
    assert web["environment"] == {
        "COUNTRY": "no",
        "ENABLED": "yes",
        "MODE": 755,
        "OCTAL": 15,
        "EMPTY": None,
        "REAL": True,
        "DAY": "2024-01-01",
    }


def test_every_key_and_item_knows_its_line() -> None:
    document = parse(TEXT, name="c.yml")
    assert str(locate(document, ("services", "web", "image"))) == "c.yml:3"
    assert str(locate(document, ("services", "web", "ports", 1))) == "c.yml:6"
    # a path that goes further than the file: the deepest part that exists
    assert str(locate(document, ("services", "web", "deploy", "replicas"))) == "c.yml:2"


def test_a_key_written_twice_is_an_error() -> None:
    with pytest.raises(ComposeError) as refused:
        parse("services:\n  web:\n    image: a\n    image: b\n", name="c.yml")
    assert (
        str(refused.value)
        == "c.yml:4: services.web.image: key 'image' is already defined at line 3"
    )


def test_merge_keys_let_the_mapping_override_the_anchor() -> None:
    text = "x: &base\n  a: 1\n  b: 2\ny:\n  <<: *base\n  b: 3\n"
    document = parse(text, name="c.yml")
    assert document["y"] == {"a": 1, "b": 3}
    assert str(locate(document, ("y", "a"))) == "c.yml:2"  # where the value was written
    assert str(locate(document, ("y", "b"))) == "c.yml:6"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "c.yml:1: the file is empty"),
        ("- a\n- b\n", "c.yml:1: a compose file is a mapping with a `services` key"),
        ("services:\n\tweb: {}\n", "YAML indents with spaces, not tabs"),
    ],
)
def test_files_that_are_not_compose_files(text: str, message: str) -> None:
    with pytest.raises(ComposeError, match=message):
        parse(text, name="c.yml")


def test_an_alias_bomb_is_refused() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 8):
        refs = ", ".join([f"*{chr(96 + level)}"] * 10)
        lines.append(f"{chr(97 + level)}: &{chr(97 + level)} [{refs}]")
    with pytest.raises(ComposeError, match="alias loop"):
        parse("\n".join(lines) + "\n", name="bomb.yml")


@pytest.mark.parametrize(("where", "line"), [(0, 1), (30, 3), (3000, 201)])
def test_a_character_yaml_forbids_is_a_problem_with_its_line(where: int, line: int) -> None:
    lines = ["services:", "  web:", "    image: nginx", *(f"# {'c' * 12}" for _ in range(200))]
    text = "\n".join(lines) + "\n"
    text = text[:where] + "\x81" + text[where:]
    with pytest.raises(ComposeError) as refused:
        parse(text, name="bad.yml")
    [problem] = refused.value.problems
    assert str(problem).startswith(f"bad.yml:{line}:")
    assert "#x0081" in str(problem)
