"""The compose files in tests/data/compose, each deployed or refused as a user would see it.

A deployable file is checked for the services it yields (the fields a user wrote, not the
model's defaults) and its warnings; a broken one for every error line, file, line and key
included, since that line is what the user reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controlplane.compose import ComposeError, Stack, load_stack_files
from controlplane.compose.convert import NAMESPACE_LABEL

DATA = Path(__file__).parents[1] / "data" / "compose"
ENVIRON = {"TAG": "1.2", "EMPTY": "", "DEBUG": "1", "FROM_SHELL": "from-shell", "API_KEY": "k"}


@pytest.fixture(autouse=True)
def in_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Error lines name files as the user typed them: relative to where they run."""
    monkeypatch.chdir(DATA)


def deploy(*files: str, environ: dict[str, str] | None = None) -> Stack:
    return load_stack_files(
        list(files), name="shop", environ=ENVIRON if environ is None else environ
    )


def written(stack: Stack) -> dict[str, dict[str, Any]]:
    """Each service as the fields that differ from the defaults, labels aside."""
    return {
        spec.name: spec.model_dump(
            mode="json",
            exclude_defaults=True,
            exclude={"name", "labels", "container_labels", "stack"},
        )
        for spec in stack.services
    }


def refusal(*files: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ComposeError) as refused:
        deploy(*files, environ=environ)
    return str(refused.value).splitlines()


def test_web_and_db_deploy_with_warnings_for_laptop_only_keys() -> None:
    stack = deploy("web-db.yml")
    assert written(stack) == {
        "shop_web": {
            "image": "ghcr.io/example/shop-web:2.4.1",
            "env": {
                "DATABASE_URL": "postgres://shop@db:5432/shop",
                "WORKERS": "4",
                "DEBUG": "false",
            },
            "replicas": 3,
            "ports": [{"target": 80, "published": 8080}],
        },
        "shop_db": {
            "image": "postgres:16-alpine",
            "env": {"POSTGRES_USER": "shop", "POSTGRES_DB": "shop"},
            "placement": {"constraints": ["node.labels.disk == ssd"]},
        },
    }
    warned = [str(w) for w in stack.warnings]
    assert warned[0].startswith("web-db.yml:7: services.web.build: ignored: ")
    assert warned[1].startswith("web-db.yml:14: services.web.depends_on: ignored: ")
    assert warned[2] == "web-db.yml:16: services.web.restart: ignored: use deploy.restart_policy"
    assert warned[3].startswith("web-db.yml:25: services.db.volumes: not supported yet")
    assert "data written in the container is lost" in warned[3]
    assert warned[4].startswith("web-db.yml:32: volumes: ")
    assert len(warned) == 5


def test_every_service_carries_the_stack_namespace() -> None:
    for spec in deploy("web-db.yml").services:
        assert spec.stack == "shop"
        assert spec.labels[NAMESPACE_LABEL] == "shop"
        assert spec.container_labels[NAMESPACE_LABEL] == "shop"


def test_global_agent_with_host_port_and_labels() -> None:
    stack = deploy("global-agent.yml")
    assert written(stack) == {
        "shop_node-exporter": {
            "image": "prom/node-exporter:v1.8.1",
            "args": ["--path.rootfs=/host", "--collector.disable-defaults"],
            "mode": "global",
            "ports": [{"target": 9100, "published": 9100, "mode": "host"}],
            "limits": {"memory_bytes": 64 * 1024**2},
            "placement": {"constraints": ["node.platform.os == linux"]},
        }
    }
    spec = stack.services[0]
    assert spec.container_labels["com.example.team"] == "platform"
    assert spec.labels["com.example.scrape"] == "true"
    assert stack.warnings == []


def test_placement_constraints_preferences_and_affinity() -> None:
    assert written(deploy("placement.yml")) == {
        "shop_api": {
            "image": "registry.example.com/api:1.0",
            "replicas": 6,
            "placement": {
                "constraints": [
                    "node.role != manager",
                    "engine.labels.region == eu-west",
                    "constraint:storage==ssd*",
                ],
                "preferences": ["spread=node.labels.zone", "spread=node.labels.rack"],
                "max_replicas_per_node": 2,
            },
        },
        "shop_cache": {
            "image": "redis:7",
            "placement": {"constraints": ["affinity:service==shop_api"]},
        },
    }


def test_resources_entrypoint_and_command() -> None:
    stack = deploy("resources.yml")
    assert written(stack) == {
        "shop_worker": {
            "image": "python:3.11-slim",
            "command": ["python", "-m"],  # compose's entrypoint replaces the image's
            "args": ["worker", "--queue", "default"],  # compose's command is the CMD
            "workdir": "/srv/app",
            "user": "1000:1000",
            "replicas": 2,
            "limits": {"nano_cpus": 1_500_000_000, "memory_bytes": 1536 * 1024**2},
            "reservations": {"nano_cpus": 250_000_000, "memory_bytes": 512 * 1024**2},
        }
    }
    assert [str(w) for w in stack.warnings] == [
        "resources.yml:14: services.worker.deploy.resources.limits.pids: "
        "not supported by shoal yet, ignored"
    ]


def test_healthcheck_is_carried_into_the_spec() -> None:
    stack = deploy("healthcheck.yml")
    assert written(stack) == {
        "shop_web": {
            "image": "nginx:1.27-alpine",
            "healthcheck": {
                "test": ["CMD", "wget", "-qO-", "http://localhost/"],
                "timeout_seconds": 5.0,
                "start_period_seconds": 10.0,
            },  # interval 30s and retries 3 are Docker's defaults
        }
    }
    assert stack.warnings == []


def test_env_file_then_environment_then_the_shell() -> None:
    (spec,) = deploy("env-file.yml").services
    assert spec.env == {
        "LOG_LEVEL": "debug",  # environment: overrides the env file
        "GREETING": "hello world",  # quotes removed
        "REGION": "eu-west-1",  # `export` allowed
        "FROM_SHELL": "from-shell",  # a bare name in the env file reads the shell
        "API_KEY": "k",  # a bare name in environment too
    }


def test_long_and_short_ports() -> None:
    stack = deploy("ports-long.yml")
    ports = [(p.published, p.target, p.protocol, p.mode.value) for p in stack.services[0].ports]
    assert ports == [
        (53, 53, "udp", "ingress"),
        (53, 53, "tcp", "ingress"),
        (9153, 9153, "tcp", "ingress"),
        (8081, 8080, "tcp", "host"),
        (8181, 8181, "tcp", "ingress"),
        (7000, 7000, "tcp", "ingress"),
        (7001, 7001, "tcp", "ingress"),
        (7002, 7002, "tcp", "ingress"),
    ]
    assert [str(w) for w in stack.warnings] == [
        "ports-long.yml:13: services.dns.ports[4]: host IP 127.0.0.1 dropped: "
        "swarm mode publishes on every address"
    ]


def test_update_rollback_and_restart_policies() -> None:
    assert written(deploy("update-rollback.yml")) == {
        "shop_frontend": {
            "image": "example/frontend:5.2",
            "replicas": 4,
            "restart_policy": {"condition": "on-failure", "max_attempts": 3, "window": 120.0},
            "update_config": {
                "parallelism": 2,
                "delay": 10.0,
                "order": "start-first",
                "failure_action": "rollback",
                "monitor": 30.0,
                "max_failure_ratio": 0.25,
            },
            "rollback_config": {"parallelism": 0},
            "stop_signal": "SIGQUIT",
            "stop_grace_period": 90.0,
            "init": True,
        }
    }


def test_interpolation_from_the_given_environment() -> None:
    assert written(deploy("interpolation.yml")) == {
        "shop_app": {
            "image": "docker.io/example/app:1.2",
            "args": ["sh", "-c", "echo $HOME hi"],
            "env": {
                "MODE": "production",
                "EMPTY_OK": "",
                "EMPTY_REPLACED": "fallback",
                "FLAG": "on",
            },
            "replicas": 2,
        }
    }


def test_a_required_variable_names_itself_and_the_line() -> None:
    assert refusal("interpolation.yml", environ={}) == [
        "interpolation.yml:3: services.app.image: required variable TAG is not set: "
        "set TAG to the release to deploy"
    ]


def test_later_files_override_earlier_ones() -> None:
    stack = deploy("override/base.yml", "override/prod.yml")
    assert written(stack) == {
        "shop_web": {
            "image": "example/web:1.1",
            "args": ["serve", "--port", "80", "--workers", "8"],  # replaced, not appended
            "env": {"LOG_LEVEL": "info", "FEATURE_X": "on"},  # merged by name
            "replicas": 5,
            # 8080 is published again by prod.yml: the later file's mapping wins
            "ports": [{"target": 80, "published": 80}, {"target": 8000, "published": 8080}],
            "placement": {"constraints": ["node.role == worker", "node.labels.tier == front"]},
        },
        "shop_worker": {"image": "example/worker:1.0"},
    }


def test_anchors_and_merge_keys_and_yaml_1_2_scalars() -> None:
    stack = deploy("anchors.yml")
    assert written(stack) == {
        "shop_api": {
            "image": "example/api:7",
            "env": {"TZ": "Europe/Paris", "country": "no", "ROLE": "api"},  # "no" stays text
            "replicas": 2,
            "update_config": {"order": "start-first"},
        },
        "shop_jobs": {
            "image": "example/jobs:7",
            "env": {"TZ": "Europe/Paris", "country": "no"},
            "update_config": {"order": "start-first"},
        },
    }
    assert [str(w) for w in stack.warnings] == [
        "anchors.yml:3: services.api.restart: ignored: use deploy.restart_policy",
        "anchors.yml:3: services.jobs.restart: ignored: use deploy.restart_policy",
    ]


# --- refused ----------------------------------------------------------------------------


def test_the_issue_example_replicas_five() -> None:
    assert refusal("bad-replicas/docker-compose.yml") == [
        "bad-replicas/docker-compose.yml:12: services.web.deploy.replicas: 'five' is not an integer"
    ]


def test_typos_are_named_with_a_suggestion() -> None:
    assert refusal("bad-typos.yml") == [
        "bad-typos.yml:3: services.web.imgae: unknown key 'imgae'; did you mean 'image'?",
        "bad-typos.yml:7: services.web.deploy.resorces: unknown key 'resorces'; "
        "did you mean 'resources'?",
        "bad-typos.yml:11: services.web.deploy.update_config.order: 'sideways' is not one of: "
        "start-first, stop-first",
        "bad-typos.yml:14: services.web.ports[0].publised: unknown key 'publised'; "
        "did you mean 'published'?",
    ]


def test_keys_swarm_mode_refuses_are_errors_with_the_alternative() -> None:
    assert refusal("bad-rejected.yml") == [
        "bad-rejected.yml:4: services.web.mem_limit: not allowed in a stack: "
        "use deploy.resources.limits.memory",
        "bad-rejected.yml:5: services.web.cpus: not allowed in a stack: "
        "use deploy.resources.limits.cpus",
        "bad-rejected.yml:7: services.worker.extends: not allowed in a stack: "
        "not supported in a stack; merge files with several -c options instead",
        "bad-rejected.yml:12: services.worker.deploy.mode: 'replicated-job': "
        "jobs are not supported by shoal yet",
    ]


def test_every_bad_value_is_reported_at_once() -> None:
    lines = refusal("bad-values.yml")
    assert [line.split(": ", 2)[:2] for line in lines] == [
        ["bad-values.yml:4", "services.web.stop_grace_period"],
        ["bad-values.yml:7", "services.web.ports[1]"],
        ["bad-values.yml:8", "services.web.ports[2]"],
        ["bad-values.yml:11", "services.web.deploy.replicas"],
        ["bad-values.yml:14", "services.web.deploy.placement.constraints[0]"],
        ["bad-values.yml:16", "services.web.deploy.placement.preferences[0].spread"],
        ["bad-values.yml:19", "services.web.deploy.resources.limits.memory"],
        ["bad-values.yml:21", "services.web.deploy.restart_policy.condition"],
        ["bad-values.yml:23", "services.web.deploy.rollback_config.failure_action"],
        ["bad-values.yml:24", "services.build-only"],
    ]
    assert "'10x' is not a duration" in lines[0]
    assert "port 8080/tcp is already published at line 6" in lines[1]
    assert "protocol 'sctp' is not supported" in lines[2]
    assert "a global service runs one task per node" in lines[3]
    assert "unknown constraint key 'node.rol'" in lines[4]
    assert "unknown key 'node.zone'" in lines[5]
    assert "'lots' is not a size" in lines[6]
    assert "'always' is not one of: none, on-failure, any" in lines[7]
    assert "'rollback' is not one of: pause, continue" in lines[8]
    assert "needs an `image`" in lines[9]


def test_broken_yaml_points_at_the_line() -> None:
    assert refusal("bad-yaml.yml") == [
        "bad-yaml.yml:9: invalid YAML: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block mapping); check the indentation"
    ]


def test_a_missing_file_is_named() -> None:
    assert refusal("nope.yml") == ["nope.yml: no such file"]


def test_an_invalid_stack_name_is_refused() -> None:
    with pytest.raises(ComposeError, match="'-shop' is not a valid stack name"):
        load_stack_files(["web-db.yml"], name="-shop", environ={})
