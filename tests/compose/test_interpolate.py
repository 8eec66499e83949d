"""`${VAR}` and friends: every form, nesting, escapes, and the errors."""

from __future__ import annotations

import pytest

from controlplane.compose.interpolate import Interpolator

ENV = {"SET": "value", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$SET and ${SET}", "value and value"),
        ("${SET:-d} ${UNSET:-d} ${EMPTY:-d}", "value d d"),
        ("${SET-d} ${UNSET-d} [${EMPTY-d}]", "value d []"),
        ("${SET:+r} [${UNSET:+r}] [${EMPTY:+r}]", "r [] []"),
        ("${SET+r} [${UNSET+r}] ${EMPTY+r}", "r [] r"),
        ("${UNSET:-${SET}} ${UNSET:-${ALSO_UNSET:-deep}}", "value deep"),
        ("$$SET costs $$5", "$SET costs $5"),
        ("${SET?never shown}", "value"),
        ("no variables", "no variables"),
        ("${UNSET:-a}b$SET.c", "abvalue.c"),
    ],
)
def test_forms(text: str, expected: str) -> None:
    assert Interpolator(ENV).text(text) == expected


def test_an_unset_variable_is_empty_with_one_warning() -> None:
    interpolator = Interpolator(ENV)
    assert interpolator.text("[$NOPE][${NOPE}]", path=("services", "a", "image")) == "[][]"
    assert [w.message for w in interpolator.warnings] == [
        "variable NOPE is not set; using an empty string"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${UNSET?give it}", "required variable UNSET is not set: give it"),
        ("${EMPTY:?give it}", "required variable EMPTY is empty: give it"),
        ("${UNSET:?}", "required variable UNSET is not set"),
        ("${SET", "unterminated ${...}"),
        ("cost: $5", "'$' must be followed by a name"),
        ("${SET!x}", "after the name use }, :-, -, :?, ?, :+ or +"),
        ("${}", "expected a name"),
    ],
)
def test_errors_say_what_to_fix(text: str, message: str) -> None:
    interpolator = Interpolator(ENV)
    interpolator.tree(text, ("services", "a", "image"), None)
    assert len(interpolator.errors) == 1
    assert message in interpolator.errors[0].message
