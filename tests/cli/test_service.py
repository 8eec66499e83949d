"""`shoal service` flags as the service spec the manager stores (no leader here: `-d`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli.conftest import ServedManager, shoal


def inspect(name: str) -> dict[str, Any]:
    result = shoal("service", "inspect", name)
    assert result.exit_code == 0, result.output
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found[0]


def test_create_with_every_kind_of_flag(cluster: ServedManager, tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("FROM_FILE=1\nSHARED=file\n")
    result = shoal(
        "service", "create", "-d", "--name", "web", "--replicas", "3",
        "-p", "8080:80", "-p", "published=9100,target=9100,mode=host", "-p", "53:53/udp",
        "--env-file", str(env_file), "-e", "SHARED=flag", "-e", "MODE=prod",
        "--label", "team=web", "--container-label", "logs=json",
        "--constraint", "node.labels.zone==a", "--placement-pref", "spread=node.labels.rack",
        "--max-replicas-per-node", "2",
        "--limit-cpu", "0.5", "--limit-memory", "256M",
        "--reserve-cpu", "0.25", "--reserve-memory", "128M",
        "--restart-condition", "on-failure", "--restart-delay", "10s",
        "--restart-max-attempts", "3", "--restart-window", "2m",
        "--update-parallelism", "2", "--update-delay", "5s", "--update-order", "start-first",
        "--update-failure-action", "rollback", "--update-monitor", "30s",
        "--update-max-failure-ratio", "0.2",
        "--rollback-parallelism", "0", "--rollback-failure-action", "continue",
        "--workdir", "/srv", "--user", "1000", "--entrypoint", "/bin/sh -c",
        "--stop-grace-period", "1m30s", "--stop-signal", "SIGQUIT", "--init",
        "nginx:1.27", "nginx", "-g", "daemon off;",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    service = inspect("web")
    assert result.stdout == f"{service['id']}\n"
    spec = service["spec"]
    assert spec["image"] == "nginx:1.27"
    assert spec["command"] == ["/bin/sh", "-c"]
    assert spec["args"] == ["nginx", "-g", "daemon off;"]  # `-g` is the command's, not ours
    assert spec["env"] == {"FROM_FILE": "1", "SHARED": "flag", "MODE": "prod"}
    assert spec["labels"] == {"team": "web"}
    assert spec["container_labels"] == {"logs": "json"}
    assert spec["replicas"] == 3
    assert [(p["published"], p["target"], p["protocol"], p["mode"]) for p in spec["ports"]] == [
        (8080, 80, "tcp", "ingress"),
        (9100, 9100, "tcp", "host"),
        (53, 53, "udp", "ingress"),
    ]
    assert spec["placement"] == {
        "constraints": ["node.labels.zone==a"],
        "preferences": ["spread=node.labels.rack"],
        "max_replicas_per_node": 2,
        "platforms": [],
    }
    assert spec["limits"] == {"nano_cpus": 500_000_000, "memory_bytes": 256 * 1024**2}
    assert spec["reservations"] == {"nano_cpus": 250_000_000, "memory_bytes": 128 * 1024**2}
    assert spec["restart_policy"] == {
        "condition": "on-failure",
        "delay": 10.0,
        "max_attempts": 3,
        "window": 120.0,
    }
    assert spec["update_config"] == {
        "parallelism": 2,
        "delay": 5.0,
        "order": "start-first",
        "failure_action": "rollback",
        "monitor": 30.0,
        "max_failure_ratio": 0.2,
    }
    assert spec["rollback_config"]["parallelism"] == 0
    assert spec["rollback_config"]["failure_action"] == "continue"
    assert (spec["workdir"], spec["user"], spec["stop_signal"]) == ("/srv", "1000", "SIGQUIT")
    assert (spec["stop_grace_period"], spec["init"]) == (90.0, True)


def test_create_names_the_service_after_the_image(cluster: ServedManager) -> None:
    assert shoal("service", "create", "-d", "registry:5000/team/api:1.2").exit_code == 0
    assert inspect("api")["spec"]["image"] == "registry:5000/team/api:1.2"


def test_update_changes_only_what_the_flags_say(cluster: ServedManager) -> None:
    created = shoal(
        "service", "create", "-d", "--name", "web", "-p", "8080:80", "-p", "8443:443",
        "-e", "A=1", "-e", "B=2", "--constraint", "node.role==worker",
        "--label", "keep=me", "nginx:1.26",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    result = shoal(
        "service", "update", "-d", "--image", "nginx:1.27", "--replicas", "4",
        "--env-add", "C=3", "--env-rm", "A", "--publish-rm", "8443", "--publish-add", "9090:90",
        "--constraint-rm", "node.role==worker", "--constraint-add", "node.labels.zone==a",
        "--limit-memory", "1G", "--update-parallelism", "0", "web",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == "web\n"
    service = inspect("web")
    spec = service["spec"]
    assert service["spec_version"] == 2
    assert service["previous_spec"]["image"] == "nginx:1.26"
    assert spec["image"] == "nginx:1.27"
    assert spec["replicas"] == 4
    assert spec["env"] == {"B": "2", "C": "3"}
    assert [(p["published"], p["target"]) for p in spec["ports"]] == [(8080, 80), (9090, 90)]
    assert spec["placement"]["constraints"] == ["node.labels.zone==a"]
    assert spec["limits"]["memory_bytes"] == 1024**3
    assert spec["update_config"]["parallelism"] == 0
    assert spec["labels"] == {"keep": "me"}  # untouched


def test_update_of_a_global_service_refuses_replicas(cluster: ServedManager) -> None:
    assert shoal("service", "create", "-d", "--mode", "global", "--name", "g", "x").exit_code == 0
    result = shoal("service", "update", "--replicas", "3", "g")
    assert result.exit_code == 2
    assert "a global service runs one task per node" in result.stderr


def test_scale_several_and_report_the_ones_that_fail(cluster: ServedManager) -> None:
    for name in ("a", "b"):
        assert shoal("service", "create", "-d", "--name", name, "busybox").exit_code == 0
    assert shoal("service", "create", "-d", "--mode", "global", "--name", "g", "x").exit_code == 0
    result = shoal("service", "scale", "-d", "a=2", "nope=1", "g=3", "b=5")
    assert result.exit_code == 1
    assert result.stdout == "a scaled to 2\nb scaled to 5\n"
    assert result.stderr == (
        "shoal: service 'nope' not found\n"
        "shoal: service 'g' is global: only a replicated service scales\n"
    )
    assert (inspect("a")["spec"]["replicas"], inspect("b")["spec"]["replicas"]) == (2, 5)


def test_rollback_restores_the_previous_spec(cluster: ServedManager) -> None:
    assert shoal("service", "create", "-d", "--name", "web", "nginx:1.26").exit_code == 0
    assert shoal("service", "update", "-d", "--image", "nginx:1.27", "web").exit_code == 0
    result = shoal("service", "rollback", "-d", "web")
    assert (result.exit_code, result.stdout) == (0, "web\n")
    service = inspect("web")
    assert (service["spec"]["image"], service["spec_version"]) == ("nginx:1.26", 3)
    nothing = shoal("service", "create", "-d", "--name", "fresh", "x")
    assert nothing.exit_code == 0
    refused = shoal("service", "rollback", "-d", "fresh")
    assert (refused.exit_code, refused.stderr) == (
        1,
        "shoal: service 'fresh' has no previous spec to roll back to\n",
    )


def test_update_rollback_is_the_rollback_and_takes_no_other_change(
    cluster: ServedManager,
) -> None:
    """docker's `service update --rollback`: the same as `service rollback`."""
    assert shoal("service", "create", "-d", "--name", "web", "nginx:1.26").exit_code == 0
    assert shoal("service", "update", "-d", "--image", "nginx:1.27", "web").exit_code == 0
    mixed = shoal("service", "update", "-d", "--rollback", "--image", "nginx:1.28", "web")
    assert mixed.exit_code == 2
    assert "other flags may not be combined with --rollback" in mixed.stderr
    assert inspect("web")["spec"]["image"] == "nginx:1.27"  # nothing written
    result = shoal("service", "update", "-d", "--rollback", "web")
    assert (result.exit_code, result.stdout) == (0, "web\n")
    service = inspect("web")
    assert (service["spec"]["image"], service["update_state"]) == ("nginx:1.26", "rolling back")


def test_rm_removes_what_exists_and_reports_the_rest(cluster: ServedManager) -> None:
    for name in ("a", "b"):
        assert shoal("service", "create", "-d", "--name", name, "busybox").exit_code == 0
    result = shoal("service", "rm", "a", "nope", "b")
    assert result.exit_code == 1
    assert result.stdout == "a\nb\n"
    assert result.stderr == "shoal: service 'nope' not found\n"
    assert shoal("service", "ls", "-q").stdout == ""


def test_node_update_and_rm(cluster: ServedManager) -> None:
    cluster.seed_node("n1", hostname="one")
    cluster.seed_node("n2", hostname="two", up=False)
    result = shoal(
        "node", "update", "--availability", "drain", "--label-add", "zone=a",
        "--label-add", "disk=ssd", "one",
    )  # fmt: skip
    assert (result.exit_code, result.stdout) == (0, "n1\n")
    assert shoal("node", "update", "--label-rm", "disk", "n1").exit_code == 0
    (node,) = json.loads(shoal("node", "inspect", "n1").stdout)
    assert (node["availability"], node["labels"]) == ("drain", {"zone": "a"})
    refused = shoal("node", "rm", "n1", "n2")
    assert refused.exit_code == 1
    assert refused.stdout == "n2\n"  # the down node goes; the ready one needs --force
    assert "--force" in refused.stderr
    assert shoal("node", "rm", "--force", "n1").exit_code == 0
    assert shoal("node", "ls", "-q").stdout == ""
