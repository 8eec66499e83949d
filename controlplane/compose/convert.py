"""A merged, validated compose document as `ServiceSpec`s: one per service, `<stack>_<name>`.

The mapping follows `docker stack deploy`: compose's `entrypoint` is the spec's
`command` and compose's `command` is its `args` (the image's ENTRYPOINT and CMD);
compose `labels` label the containers and `deploy.labels` the service; both carry
`com.docker.stack.namespace=<stack>`, which is how a stack's services are found again.

Values are checked here beyond the schema (which lets strings through so that
interpolation can fill them): `replicas: five` is an error at its line, and so is a
placement constraint the scheduler would not understand, so a deploy never writes a
service whose tasks could never be placed.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any, TypeVar

from pydantic import ValidationError

from controlplane.compose import support, units
from controlplane.compose.envfile import EnvFileError, read_env_file
from controlplane.compose.healthcheck import read_healthcheck
from controlplane.compose.merge import as_mapping
from controlplane.compose.ports import parse_port
from controlplane.compose.problems import Location, Path, Problem
from controlplane.compose.source import Mapping as Located
from controlplane.compose.source import Sequence as LocatedList
from controlplane.compose.source import locate
from controlplane.models import PortConfig, ServiceSpec
from controlplane.models.service import SERVICE_NAME
from scheduler.constraints import (
    AFFINITY_PREFIX,
    ConstraintError,
    parse_affinity,
    parse_constraint,
    parse_preference,
)

NAMESPACE_LABEL = "com.docker.stack.namespace"
STACK_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")

T = TypeVar("T")

_RESTART_CONDITIONS = ("none", "on-failure", "any")
_FAILURE_ACTIONS = ("pause", "continue", "rollback")
_ORDERS = ("stop-first", "start-first")

#: Where a field of `ServiceSpec` comes from in a compose service (for model errors).
_SPEC_SOURCE: dict[str, Path] = {
    "image": ("image",),
    "command": ("entrypoint",),
    "args": ("command",),
    "env": ("environment",),
    "container_labels": ("labels",),
    "labels": ("deploy", "labels"),
    "workdir": ("working_dir",),
    "user": ("user",),
    "mode": ("deploy", "mode"),
    "replicas": ("deploy", "replicas"),
    "ports": ("ports",),
    "limits": ("deploy", "resources", "limits"),
    "reservations": ("deploy", "resources", "reservations"),
    "placement": ("deploy", "placement"),
    "restart_policy": ("deploy", "restart_policy"),
    "update_config": ("deploy", "update_config"),
    "rollback_config": ("deploy", "rollback_config"),
    "stop_grace_period": ("stop_grace_period",),
}


def check_stack_name(name: str) -> None:
    """`ValueError` unless `name` can prefix service names."""
    if not STACK_NAME.match(name):
        raise ValueError(
            f"{name!r} is not a valid stack name: start with a letter or digit, then "
            "letters, digits, '_', '.' or '-'"
        )


@dataclass
class Findings:
    """Errors and warnings found while converting, located in the merged document."""

    document: Located
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def error(self, path: Path, message: str) -> None:
        self.errors.append(Problem(locate(self.document, path), path, message))

    def warn(self, path: Path, message: str) -> None:
        self.warnings.append(Problem(locate(self.document, path), path, message))


def convert_stack(
    document: Located,
    *,
    stack: str,
    environ: Mapping[str, str],
    workdir: FilePath,
    findings: Findings,
) -> list[ServiceSpec]:
    """Every service of the document as a spec; problems go to `findings`."""
    for key in document:
        if key in support.TOP_LEVEL_REJECTED:
            findings.error((key,), support.TOP_LEVEL_REJECTED[key])
        elif support.TOP_LEVEL.get(key):
            findings.warn((key,), support.TOP_LEVEL[key])
    services = document.get("services")
    if not isinstance(services, Located) or not services:
        findings.error(("services",), "a stack needs at least one service")
        return []
    specs = []
    for name, raw in services.items():
        service = _Service(
            name=name, raw=raw, stack=stack, environ=environ, workdir=workdir, findings=findings
        )
        spec = service.spec()
        if spec is not None:
            specs.append(spec)
    return specs


@dataclass
class _Service:
    name: str
    raw: Any
    stack: str
    environ: Mapping[str, str]
    workdir: FilePath
    findings: Findings

    @property
    def path(self) -> Path:
        return ("services", self.name)

    def error(self, sub: Path, message: str) -> None:
        self.findings.error((*self.path, *sub), message)

    def warn(self, sub: Path, message: str) -> None:
        self.findings.warn((*self.path, *sub), message)

    def read(self, sub: Path, parse: Callable[[Any], T], value: Any) -> T | None:
        """`parse(value)`, or None with an error at `sub` when it raises `ValueError`."""
        try:
            return parse(value)
        except ValueError as exc:
            self.error(sub, str(exc))
            return None

    # --- the spec ---------------------------------------------------------------------
    def spec(self) -> ServiceSpec | None:
        raw = self.raw if isinstance(self.raw, Located) else Located(Location("", 0))
        before = len(self.findings.errors)
        self._check_keys(raw)
        full_name = f"{self.stack}_{self.name}"
        if not SERVICE_NAME.match(full_name):
            self.error(
                (),
                f"the service name {full_name!r} is not valid: at most 63 letters, "
                "digits, '_', '.' and '-'",
            )
        image = raw.get("image")
        if not image:
            hint = (
                " (swarm mode does not build images: push one and name it)"
                if "build" in raw
                else ""
            )
            self.error((), f"needs an `image`{hint}")
        namespace = {NAMESPACE_LABEL: self.stack}
        fields: dict[str, Any] = {
            "name": full_name,
            "image": image or "-",
            "stack": self.stack,
            "env": self._environment(raw),
            "container_labels": {**self._labels(raw.get("labels"), ("labels",)), **namespace},
            "ports": self._ports(raw.get("ports")),
        }
        for key, target in (("entrypoint", "command"), ("command", "args")):
            if raw.get(key) is not None:
                fields[target] = self._command(raw[key], (key,))
        for key, target in (("working_dir", "workdir"), ("user", "user")):
            if raw.get(key):
                fields[target] = str(raw[key])
        if raw.get("stop_signal"):
            fields["stop_signal"] = str(raw["stop_signal"])
        if raw.get("stop_grace_period") is not None:
            fields["stop_grace_period"] = self.read(
                ("stop_grace_period",), units.duration, raw["stop_grace_period"]
            )
        if raw.get("init") is not None:
            fields["init"] = self.read(("init",), units.boolean, raw["init"])
        if raw.get("healthcheck") is not None:
            fields["healthcheck"] = read_healthcheck(
                raw["healthcheck"], error=self.error, warn=self.warn
            )
        deploy = raw.get("deploy")
        fields.update(_Deploy(self, deploy if isinstance(deploy, Located) else None).fields())
        fields["labels"] = {**fields.get("labels", {}), **namespace}
        if len(self.findings.errors) > before:
            return None
        return self._build({k: v for k, v in fields.items() if v is not None})

    def _build(self, fields: dict[str, Any]) -> ServiceSpec | None:
        try:
            return ServiceSpec.model_validate(fields)
        except ValidationError as exc:
            for problem in exc.errors():
                loc = problem["loc"]
                source = _SPEC_SOURCE.get(str(loc[0]), ()) if loc else ()
                self.error(source, str(problem["msg"]).removeprefix("Value error, "))
            return None

    def _check_keys(self, raw: Located) -> None:
        for key in raw:
            if key in support.SUPPORTED or key.startswith("x-"):
                continue
            if key in support.REJECTED:
                self.error((key,), f"not allowed in a stack: {support.REJECTED[key]}")
            elif key in support.IGNORED:
                self.warn((key,), f"ignored: {support.IGNORED[key]}")
            elif key in support.NOT_YET:
                self.warn((key,), f"not supported yet, ignored: {support.NOT_YET[key]}")
            else:
                self.warn((key,), "not supported by shoal, ignored")

    # --- container --------------------------------------------------------------------
    def _command(self, value: Any, sub: Path) -> list[str] | None:
        if isinstance(value, str):
            try:
                return shlex.split(value)
            except ValueError as exc:
                self.error(sub, f"cannot split {value!r} into words: {exc}")
                return None
        return [str(part) for part in value]

    def _environment(self, raw: Located) -> dict[str, str]:
        env: dict[str, str] = {}
        env_files = raw.get("env_file")
        if env_files is not None:
            env.update(self._env_files(env_files))
        declared = raw.get("environment")
        if isinstance(declared, Located | LocatedList):
            for key, value in as_mapping(declared).items():
                if value is None:
                    if key in self.environ:
                        env[key] = self.environ[key]
                    continue
                env[key] = _text(value)
        return env

    def _env_files(self, value: Any) -> dict[str, str]:
        entries = [value] if isinstance(value, str) else list(value)
        env: dict[str, str] = {}
        for index, entry in enumerate(entries):
            sub: Path = ("env_file",) if isinstance(value, str) else ("env_file", index)
            path_text = entry.get("path") if isinstance(entry, Mapping) else entry
            required = True
            if isinstance(entry, Mapping) and "required" in entry:
                required = bool(self.read((*sub, "required"), units.boolean, entry["required"]))
            path = self.workdir / str(path_text)
            if not path.exists() and not required:
                continue
            try:
                env.update(read_env_file(path, self.environ))
            except EnvFileError as exc:
                self.error(sub, str(exc))
        return env

    def _labels(self, value: Any, sub: Path) -> dict[str, str]:
        if not isinstance(value, Located | LocatedList):
            return {}
        return {key: "" if v is None else _text(v) for key, v in as_mapping(value).items()}

    def _ports(self, value: Any) -> list[PortConfig]:
        if not isinstance(value, LocatedList):
            return []
        chosen: dict[tuple[str, int], tuple[int, Location]] = {}  # (proto, port) -> index
        ports: list[PortConfig | None] = []
        for index, entry in enumerate(value):
            sub: Path = ("ports", index)
            try:
                parsed = parse_port(entry)
            except ValueError as exc:
                self.error(sub, str(exc))
                continue
            for note in parsed.notes:
                self.warn(sub, note)
            for port in parsed.ports:
                if port.published is not None:
                    key = (port.protocol, port.published)
                    if key in chosen:
                        earlier, where = chosen[key]
                        if where.file == value.where[index].file:
                            self.error(
                                sub,
                                f"port {port.published}/{port.protocol} is already "
                                f"published at line {where.line}",
                            )
                            continue
                        ports[earlier] = None  # a later file overrides the earlier one
                    chosen[key] = (len(ports), value.where[index])
                ports.append(port)
        return [port for port in ports if port is not None]


@dataclass
class _Deploy:
    """`deploy`: mode, replicas, placement, resources and the three policies."""

    service: _Service
    raw: Located | None

    def fields(self) -> dict[str, Any]:
        raw = self.raw
        if raw is None:
            return {}
        service = self.service
        for key in raw:
            if key in support.DEPLOY_NOT_YET:
                service.warn(
                    ("deploy", key), f"not supported yet, ignored: {support.DEPLOY_NOT_YET[key]}"
                )
        out: dict[str, Any] = {}
        mode = str(raw.get("mode") or "replicated")
        if mode in ("replicated-job", "global-job"):
            service.error(("deploy", "mode"), f"{mode!r}: jobs are not supported by shoal yet")
        elif mode not in ("replicated", "global"):
            service.error(("deploy", "mode"), f"{mode!r} is not one of: replicated, global")
        out["mode"] = mode
        if raw.get("replicas") is not None:
            if mode == "global":
                service.error(
                    ("deploy", "replicas"),
                    "a global service runs one task per node; remove replicas",
                )
            out["replicas"] = service.read(("deploy", "replicas"), units.integer, raw["replicas"])
        if raw.get("labels") is not None:
            out["labels"] = service._labels(raw["labels"], ("deploy", "labels"))
        out.update(self._resources(raw.get("resources")))
        if isinstance(raw.get("placement"), Located):
            out["placement"] = self._placement(raw["placement"], global_mode=mode == "global")
        if isinstance(raw.get("restart_policy"), Located):
            out["restart_policy"] = self._restart(raw["restart_policy"])
        for key in ("update_config", "rollback_config"):
            if isinstance(raw.get(key), Located):
                out[key] = self._update(raw[key], key)
        return out

    def _resources(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, Located):
            return {}
        service = self.service
        out: dict[str, Any] = {}
        for kind in ("limits", "reservations"):
            part = raw.get(kind)
            if not isinstance(part, Located):
                continue
            sub: Path = ("deploy", "resources", kind)
            resource: dict[str, Any] = {}
            if part.get("cpus") is not None:
                resource["nano_cpus"] = service.read((*sub, "cpus"), units.nano_cpus, part["cpus"])
            if part.get("memory") is not None:
                resource["memory_bytes"] = service.read(
                    (*sub, "memory"), units.size, part["memory"]
                )
            for key in part:
                if key not in ("cpus", "memory") and not key.startswith("x-"):
                    service.warn((*sub, key), "not supported by shoal yet, ignored")
            out[kind] = resource
        return out

    def _placement(self, raw: Located, *, global_mode: bool) -> dict[str, Any]:
        service = self.service
        sub: Path = ("deploy", "placement")
        out: dict[str, Any] = {}
        constraints = [str(text) for text in raw.get("constraints") or []]
        for index, text in enumerate(constraints):
            try:
                if text.strip().startswith(AFFINITY_PREFIX):
                    parse_affinity(text)
                else:
                    parse_constraint(text)
            except ConstraintError as exc:
                service.error((*sub, "constraints", index), str(exc))
        out["constraints"] = constraints
        preferences = []
        for index, item in enumerate(raw.get("preferences") or []):
            spread = item.get("spread") if isinstance(item, Mapping) else None
            if not spread:
                continue
            text = f"spread={spread}"
            try:
                parse_preference(text)
            except ConstraintError as exc:
                service.error((*sub, "preferences", index, "spread"), str(exc))
            preferences.append(text)
        out["preferences"] = preferences
        if raw.get("max_replicas_per_node") is not None:
            most = service.read(
                (*sub, "max_replicas_per_node"), units.integer, raw["max_replicas_per_node"]
            )
            if global_mode and most is not None and most > 1:
                service.error(
                    (*sub, "max_replicas_per_node"),
                    "a global service runs one task per node; use 0 or 1",
                )
            out["max_replicas_per_node"] = most
        return out

    def _restart(self, raw: Located) -> dict[str, Any]:
        service = self.service
        sub: Path = ("deploy", "restart_policy")
        out: dict[str, Any] = {}
        if raw.get("condition") is not None:
            out["condition"] = service.read(
                (*sub, "condition"), _choice(_RESTART_CONDITIONS), raw["condition"]
            )
        if raw.get("delay") is not None:
            out["delay"] = service.read((*sub, "delay"), units.duration, raw["delay"])
        if raw.get("max_attempts") is not None:
            out["max_attempts"] = service.read(
                (*sub, "max_attempts"), units.integer, raw["max_attempts"]
            )
        if raw.get("window") is not None:
            out["window"] = service.read((*sub, "window"), units.duration, raw["window"])
        return out

    def _update(self, raw: Located, key: str) -> dict[str, Any]:
        service = self.service
        sub: Path = ("deploy", key)
        actions = _FAILURE_ACTIONS if key == "update_config" else _FAILURE_ACTIONS[:2]
        readers: dict[str, Callable[[Any], Any]] = {
            "parallelism": units.integer,
            "delay": units.duration,
            "failure_action": _choice(actions),
            "monitor": units.duration,
            "max_failure_ratio": units.ratio,
            "order": _choice(_ORDERS),
        }
        out: dict[str, Any] = {}
        for name, reader in readers.items():
            if raw.get(name) is not None:
                out[name] = service.read((*sub, name), reader, raw[name])
        return out


def _choice(allowed: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value)
        if text not in allowed:
            raise ValueError(f"{text!r} is not one of: {', '.join(allowed)}")
        return text

    return parse


def _text(value: Any) -> str:
    """A YAML scalar as the string a container sees: `true`, not `True`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
