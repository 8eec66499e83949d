"""`load_stack` on inline files: merging across files, env files on disk, names."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.compose import ComposeError, ComposeFile, Stack, load_stack


def load(*texts: str, environ: dict[str, str] | None = None, workdir: Path = Path(".")) -> Stack:
    files = [ComposeFile(name=f"f{index}.yml", text=text) for index, text in enumerate(texts, 1)]
    return load_stack(files, name="app", environ=environ or {}, workdir=workdir)


def refused(
    *texts: str, environ: dict[str, str] | None = None, workdir: Path = Path(".")
) -> list[str]:
    with pytest.raises(ComposeError) as error:
        load(*texts, environ=environ, workdir=workdir)
    return str(error.value).splitlines()


def test_an_error_in_the_second_file_points_into_it() -> None:
    base = "services:\n  web:\n    image: nginx\n"
    override = "services:\n  web:\n    deploy:\n      replicas: many\n"
    assert refused(base, override) == [
        "f2.yml:4: services.web.deploy.replicas: 'many' is not an integer"
    ]


def test_a_schema_error_in_each_file_is_reported_together() -> None:
    assert refused("services:\n  a:\n    imag: x\n", "services:\n  a:\n    image: [x]\n") == [
        "f1.yml:3: services.a.imag: unknown key 'imag'; did you mean 'image'?",
        "f2.yml:3: services.a.image: a list is not a string",
    ]


def test_a_port_published_twice_in_one_file_is_an_error_but_a_later_file_may_move_it() -> None:
    twice = "services:\n  web:\n    image: x\n    ports: ['80:80', '80:81']\n"
    assert refused(twice) == [
        "f1.yml:4: services.web.ports[1]: port 80/tcp is already published at line 4"
    ]
    moved = load(
        "services:\n  web:\n    image: x\n    ports: ['80:80']\n",
        "services:\n  web:\n    ports: ['80:8080']\n",
    )
    assert [(p.published, p.target) for p in moved.services[0].ports] == [(80, 8080)]


def test_env_files_are_read_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "app.env").write_text("A=from-file\n")
    text = "services:\n  web:\n    image: x\n    env_file: app.env\n"
    assert load(text, workdir=tmp_path).services[0].env == {"A": "from-file"}


def test_a_missing_env_file_is_an_error_unless_marked_optional(tmp_path: Path) -> None:
    required = "services:\n  web:\n    image: x\n    env_file: [missing.env]\n"
    (line,) = refused(required, workdir=tmp_path)
    assert line.startswith("f1.yml:4: services.web.env_file[0]: env file ")
    assert line.endswith("missing.env' does not exist")
    optional = (
        "services:\n  web:\n    image: x\n    env_file:\n"
        "      - path: missing.env\n        required: false\n"
    )
    assert load(optional, workdir=tmp_path).services[0].env == {}


def test_unset_variables_warn_at_their_line() -> None:
    stack = load("services:\n  web:\n    image: nginx:${TAG}\n")
    assert stack.services[0].image == "nginx:"
    assert [str(w) for w in stack.warnings] == [
        "f1.yml:3: services.web.image: variable TAG is not set; using an empty string"
    ]


def test_a_missing_variable_does_not_hide_the_other_errors() -> None:
    text = "services:\n  web:\n    image: nginx:${TAG:?}\n    deploy:\n      replicas: x\n"
    assert refused(text) == [
        "f1.yml:3: services.web.image: required variable TAG is not set",
        "f1.yml:5: services.web.deploy.replicas: 'x' is not an integer",
    ]


def test_names_too_long_for_a_service_are_refused() -> None:
    text = f"services:\n  {'w' * 60}:\n    image: x\n"
    (line,) = refused(text)
    assert line.startswith(f"f1.yml:2: services.{'w' * 60}: the service name 'app_www")
    assert "at most 63" in line


def test_a_stack_needs_services_and_include_is_refused() -> None:
    assert refused("include: [other.yml]\nservices: {}\n") == [
        "f1.yml:1: include: not supported in a stack; merge files with several -c options instead",
        "f1.yml:2: services: a stack needs at least one service",
    ]


def test_unknown_but_valid_compose_keys_are_warnings() -> None:
    stack = load("services:\n  web:\n    image: x\n    oom_score_adj: 100\n    networks: [front]\n")
    assert [str(w) for w in stack.warnings] == [
        "f1.yml:4: services.web.oom_score_adj: not supported by shoal, ignored",
        "f1.yml:5: services.web.networks: not supported yet, ignored: shoal has no overlay "
        "networks yet: tasks reach each other through published ports, not by service name",
    ]
