"""`shoal stack` over the service endpoints: deploy, re-deploy, prune, list, remove."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from controlplane.cli.client import ManagerClient
from tests.cli.conftest import ServedManager, shoal

DATA = Path(__file__).parents[1] / "data" / "compose"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the test compose files to edit, as the current directory."""
    target = tmp_path / "project"
    shutil.copytree(DATA, target)
    monkeypatch.chdir(target)
    return target


def services() -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in json.loads(shoal("service", "ls", "--format", "json").stdout)}


def test_deploy_creates_the_services_with_the_stack_label(
    cluster: ServedManager, project: Path
) -> None:
    result = shoal("stack", "deploy", "-d", "-c", "web-db.yml", "shop")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Creating service shop_web\nCreating service shop_db\n"
    warnings = result.stderr.splitlines()
    assert warnings[0].startswith("warning: web-db.yml:7: services.web.build: ignored: ")
    assert len(warnings) == 5
    deployed = services()
    assert sorted(deployed) == ["shop_db", "shop_web"]
    web = deployed["shop_web"]["spec"]
    assert web["labels"]["com.docker.stack.namespace"] == "shop"
    assert web["stack"] == "shop"
    assert web["replicas"] == 3


def test_redeploy_touches_only_what_changed_and_prunes_only_when_asked(
    cluster: ServedManager, project: Path
) -> None:
    assert shoal("stack", "deploy", "-d", "-c", "web-db.yml", "shop").exit_code == 0
    again = shoal("stack", "deploy", "-d", "-c", "web-db.yml", "shop")
    assert again.stdout == "Service shop_web is unchanged\nService shop_db is unchanged\n"
    assert {n: s["spec_version"] for n, s in services().items()} == {"shop_db": 1, "shop_web": 1}

    text = (project / "web-db.yml").read_text()
    edited = text.replace("replicas: 3", "replicas: 5").replace("shop-web:2.4.1", "shop-web:2.5.0")
    (project / "web-db.yml").write_text(edited)
    changed = shoal("stack", "deploy", "-d", "-c", "web-db.yml", "shop")
    assert changed.stdout == "Updating service shop_web\nService shop_db is unchanged\n"
    after = services()
    assert after["shop_web"]["spec_version"] == 2
    assert after["shop_web"]["spec"]["replicas"] == 5
    assert after["shop_web"]["spec"]["image"] == "ghcr.io/example/shop-web:2.5.0"
    assert after["shop_db"]["spec_version"] == 1

    web_only = project / "web-only.yml"
    web_only.write_text(edited.split("\n  db:\n")[0] + "\n")
    kept = shoal("stack", "deploy", "-d", "-c", "web-only.yml", "shop")
    assert kept.exit_code == 0, kept.output
    assert "shop_db" in services()  # not in the file, but not removed without --prune
    pruned = shoal("stack", "deploy", "-d", "--prune", "-c", "web-only.yml", "shop")
    assert pruned.stdout == "Service shop_web is unchanged\nRemoving service shop_db\n"
    assert sorted(services()) == ["shop_web"]


def test_a_mode_change_is_refused_before_anything_is_written(
    cluster: ServedManager, project: Path
) -> None:
    assert shoal("stack", "deploy", "-d", "-c", "web-db.yml", "shop").exit_code == 0
    (project / "global.yml").write_text(
        "services:\n  web:\n    image: x\n    deploy: {mode: global}\n  new:\n    image: y\n"
    )
    result = shoal("stack", "deploy", "-d", "-c", "global.yml", "shop")
    assert result.exit_code == 1
    assert result.stderr == (
        "shoal: service shop_web is replicated and the file makes it global: a mode cannot "
        "change; remove the service first (shoal service rm shop_web)\n"
    )
    assert "shop_new" not in services()


def test_a_compose_error_names_file_line_and_key_and_writes_nothing(
    cluster: ServedManager, project: Path
) -> None:
    result = shoal("stack", "deploy", "-c", "bad-replicas/docker-compose.yml", "shop")
    assert result.exit_code == 1
    assert result.stderr == (
        "shoal: bad-replicas/docker-compose.yml:12: services.web.deploy.replicas: "
        "'five' is not an integer\n"
    )
    assert services() == {}


def test_several_files_and_stdin(cluster: ServedManager, project: Path) -> None:
    merged = shoal(
        "stack", "deploy", "-d", "-c", "override/base.yml", "-c", "override/prod.yml", "app"
    )
    assert merged.exit_code == 0, merged.output
    assert services()["app_web"]["spec"]["image"] == "example/web:1.1"
    piped = shoal(
        "stack", "deploy", "-d", "-c", "-", "piped", stdin="services:\n  s:\n    image: x\n"
    )
    assert piped.exit_code == 0, piped.output
    assert "piped_s" in services()


def test_variables_come_from_the_environment(cluster: ServedManager, project: Path) -> None:
    result = shoal(
        "stack",
        "deploy",
        "-d",
        "-c",
        "interpolation.yml",
        "app",
        env={"TAG": "9.9", "REPLICAS": "4"},
    )
    assert result.exit_code == 0, result.output
    spec = services()["app_app"]["spec"]
    assert (spec["image"], spec["replicas"]) == ("docker.io/example/app:9.9", 4)


def test_ls_services_ps_and_rm(cluster: ServedManager, project: Path) -> None:
    assert shoal("stack", "deploy", "-d", "-c", "web-db.yml", "shop").exit_code == 0
    assert shoal("stack", "deploy", "-d", "-c", "healthcheck.yml", "site").exit_code == 0
    assert shoal("service", "create", "-d", "--name", "loose", "busybox").exit_code == 0
    assert shoal("stack", "ls").stdout == "NAME   SERVICES\nshop   2\nsite   1\n"
    assert json.loads(shoal("stack", "ls", "--format", "json").stdout) == [
        {"name": "shop", "services": 2},
        {"name": "site", "services": 1},
    ]
    listed = shoal("stack", "services", "shop").stdout.splitlines()
    assert [line.split()[1] for line in listed[1:]] == ["shop_db", "shop_web"]
    assert shoal("stack", "ps", "shop").stdout.split() == [
        "ID", "NAME", "IMAGE", "NODE", "DESIRED", "STATE", "CURRENT", "STATE", "ERROR"
    ]  # no leader here: no tasks yet  # fmt: skip
    removed = shoal("stack", "rm", "shop", "nope")
    assert removed.exit_code == 1
    assert removed.stdout == "Removing service shop_db\nRemoving service shop_web\n"
    assert removed.stderr == "shoal: nothing found in stack 'nope'\n"
    assert sorted(services()) == ["loose", "site_web"]
    missing = shoal("stack", "services", "shop")
    assert (missing.exit_code, missing.stderr) == (1, "shoal: nothing found in stack 'shop'\n")


def test_a_deploy_is_one_write_of_the_whole_stack(
    cluster: ServedManager, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One `POST /stacks` carries every service (and the prune), so the manager writes
    them in one transaction: all or nothing."""
    assert shoal("stack", "deploy", "-d", "-c", "web-db.yml", "shop").exit_code == 0
    writes: list[tuple[str, str, Any]] = []
    for method in ("post", "delete"):
        real = getattr(ManagerClient, method)

        def record(self: ManagerClient, path: str, *args: Any, _real: Any = real,
                   _method: str = method, **kwargs: Any) -> Any:  # fmt: skip
            writes.append((_method, path, args[0] if args else None))
            return _real(self, path, *args, **kwargs)

        monkeypatch.setattr(ManagerClient, method, record)
    compose = "services:\n  web:\n    image: nginx:1.28\n  cache:\n    image: redis:7\n"
    result = shoal("stack", "deploy", "-d", "--prune", "-c", "-", "shop", stdin=compose)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Updating service shop_web\nCreating service shop_cache\nRemoving service shop_db\n"
    )
    ((method, path, body),) = writes
    assert (method, path, body["name"], body["prune"]) == ("post", "/stacks", "shop", True)
    assert [spec["name"] for spec in body["services"]] == ["shop_web", "shop_cache"]
    assert sorted(services()) == ["shop_cache", "shop_web"]
