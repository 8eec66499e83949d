"""A Docker create body as a service spec, and the log stream's framing (no cluster)."""

from __future__ import annotations

import struct

import pytest

from controlplane.dockerapi.errors import DockerError
from controlplane.dockerapi.frames import frame, log_payload
from controlplane.dockerapi.oneoff import restarted, service_spec
from controlplane.models.service import PublishMode, RestartCondition


def test_classic_env_rules_become_placement_and_leave_the_environment() -> None:
    spec = service_spec(
        {
            "Image": "busybox",
            "Cmd": ["sleep", "1"],
            "Env": ["A=1", "constraint:storage==ssd", "affinity:container==db", "B"],
            "Labels": {"com.docker.swarm.constraints": '["region==eu-*"]', "x": "y"},
            "HostConfig": {
                "PortBindings": {"80/tcp": [{"HostPort": "8080"}]},
                "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2},
                "Init": True,
            },
        },
        name="web",
    )
    assert spec.env == {"A": "1"}
    assert spec.placement.constraints == [
        "constraint:storage==ssd",
        "affinity:service==db",
        "constraint:region==eu-*",
    ]
    assert spec.replicas == 0  # created, not started
    assert spec.args == ["sleep", "1"]
    assert spec.container_labels["x"] == "y"
    [port] = spec.ports
    assert (port.target, port.published, port.mode) == (80, 8080, PublishMode.HOST)
    assert spec.restart_policy.condition is RestartCondition.ON_FAILURE
    assert spec.restart_policy.max_attempts == 2
    assert spec.init is True


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "Image"),
        ({"Image": "b", "Env": ["constraint:zone=a"]}, "constraint:zone=a"),
        ({"Image": "b", "HostConfig": {"Binds": ["/a:/b"]}}, "HostConfig.Binds"),
        ({"Image": "b", "HostConfig": {"NetworkMode": "host"}}, "HostConfig.NetworkMode"),
        ({"Image": "b", "Labels": {"com.docker.swarm.constraints": "x"}}, "Labels.com.docker"),
        ({"Image": "b", "HostConfig": {"RestartPolicy": {"Name": "often"}}}, "RestartPolicy"),
        ({"Image": "b", "AttachStdout": True}, "docker run without -d"),
        ({"Image": "b", "StopTimeout": -5}, "invalid container config"),
        ({"Image": "b", "StopTimeout": "soon"}, "StopTimeout"),
        ({"Image": "b", "HostConfig": {"NanoCpus": "many"}}, "HostConfig.NanoCpus"),
        ({"Image": "b", "HostConfig": {"PortBindings": {"80/tcp": "a"}}}, "PortBindings.80/tcp"),
    ],
)
def test_bad_bodies_are_refused_naming_the_field(body: dict[str, object], named: str) -> None:
    with pytest.raises(DockerError) as refused:
        service_spec(body, name="c")
    assert refused.value.status == 400
    assert named in refused.value.message


def test_each_start_of_a_stopped_container_is_a_new_task_spec() -> None:
    spec = service_spec({"Image": "busybox"}, name="c")
    once = restarted(spec)
    twice = restarted(once)
    assert once.replicas == 1
    assert once.container_labels != spec.container_labels
    assert twice.container_labels != once.container_labels


def test_frames_carry_the_stream_and_the_length() -> None:
    payload = log_payload("hello", None)
    framed = frame("stderr", payload)
    stream, size = struct.unpack(">BxxxI", framed[:8])
    assert (stream, size, framed[8:]) == (2, len(b"hello\n"), b"hello\n")
    assert log_payload("x", "2026-01-01T00:00:00Z") == b"2026-01-01T00:00:00Z x\n"
