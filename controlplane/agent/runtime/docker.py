"""The Docker runtime: each task is one container on the node's local Docker Engine.

Containers carry shoal's labels (cluster, node, service, task, slot), and the labels are
the only way this runtime finds its work: `observe()` lists containers by cluster *and*
node label, so an agent restarted with the same identity adopts what is running, two
agents sharing one engine (as tests and `shoal up` do) never see each other's
containers, and nothing without those labels is ever touched.

Decisions that are the control plane's stay out of Docker: the restart policy is "no"
(a dead task is replaced by the reconciler with a new task, never restarted in place),
and a container is never re-created for the same task id. Published ports bind the
node's advertise address: an ingress port on a port the engine picks (the routing mesh
forwards to it), a host-mode port on its own published number; the ports reported are
always read back from the engine.

The Docker SDK is synchronous. Every call runs in a worker thread of the runtime's own
pool (`workers` threads, as many as the executor's task concurrency: asyncio's shared
default pool has only CPUs + 4, six on a 2-core host, which silently capped the agent at
six engine calls in flight),
and the event stream behind `changes()` gets a thread of its own, because it blocks for
as long as it is open. The client is created on first use, in a thread, so building a
runtime never blocks the event loop and never fails because the engine is down.

A task's healthcheck (or the image's own) is the container's: while the engine says
"starting" the task is `starting`, once healthy `running`, and when unhealthy `failed`
with "unhealthy container" and `needs_stop` (the executor stops it; the reconciler's
restart policy replaces it), as in swarm mode. Health changes arrive as the engine's
`health_status` events, and `observe()` re-inspects a container whose listed health
changed, so a lost event costs one resync period, not the transition.

An image that is not on the node is pulled, within `pull_timeout`; if that fails the task
is rejected with the engine's reason. Swarm mode asks the registry before every start;
that stalls where registries are slow or unreachable, so the local image wins here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import docker
import docker.errors
from docker.utils import parse_repository_tag

from controlplane.agent.runtime.base import (
    LABEL_CLUSTER,
    LABEL_NODE,
    LABEL_SERVICE,
    LABEL_SLOT,
    LABEL_TASK,
    LogLine,
    NodeDescription,
    Observed,
    Runtime,
    TaskRejected,
    UnknownTask,
)
from controlplane.agent.runtime.docker_reads import follow_logs, image_summaries, read_logs
from controlplane.agent.runtime.feed import ChangeStream
from controlplane.models.service import HealthCheck, PublishMode
from controlplane.models.task import Endpoint, Task, TaskState

log = logging.getLogger(__name__)

T = TypeVar("T")

Inspect = dict[str, Any]

# Container events that change what `observe()` reports for a task. The engine matches
# "health_status" as a prefix of its "health_status: healthy" (and so on) actions.
EVENT_ACTIONS = ("start", "die", "oom", "destroy", "health_status")

#: Why a task whose container's healthcheck failed is failed (swarm mode's words).
UNHEALTHY = "unhealthy container"

_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]+")
_RUNNING_STATES = frozenset({"running", "paused", "restarting"})


def container_name(task: Task) -> str:
    """`shoal-<service>.<slot, or node for global tasks>.<task-id>`, docker-safe."""
    middle = str(task.slot) if task.slot is not None else task.node_id
    raw = f"shoal-{task.service}.{middle}.{task.id}"
    return _NAME_UNSAFE.sub("-", raw)


def parse_docker_time(value: str | None) -> float | None:
    """Engine timestamps (RFC 3339, nanoseconds) as epoch seconds; its zero time is None."""
    if not value or value.startswith("0001-01-01"):
        return None
    return datetime.fromisoformat(value).timestamp()


def _explain(exc: docker.errors.APIError) -> str:
    return str(exc.explanation or exc)


class DockerRuntime(Runtime):
    """Runs tasks as containers on one Docker Engine, for one node of one cluster."""

    name = "docker"

    def __init__(
        self,
        *,
        cluster_id: str,
        node_id: str,
        advertise_addr: str,
        client: Any | None = None,
        docker_host: str | None = None,
        pull_timeout: float = 60.0,
        timeout: float = 60.0,
        workers: int = 16,
    ) -> None:
        """Use `client` (a `docker.DockerClient`) if given, else connect to `docker_host`
        (e.g. `unix:///var/run/docker.sock`), else to what `DOCKER_HOST` names."""
        self.cluster_id = cluster_id
        self.node_id = node_id
        self.advertise_addr = advertise_addr
        self.pull_timeout = pull_timeout
        self._timeout = timeout
        self._docker_host = docker_host
        self._client = client
        self._owns_client = client is None
        self._client_lock = threading.Lock()
        # container id -> (the engine's state word when inspected, what we made of it):
        # observe() inspects a container again only when its state word changed.
        self._seen: dict[str, tuple[str, Observed]] = {}
        self._seen_lock = threading.Lock()
        self._streams: weakref.WeakSet[ChangeStream] = weakref.WeakSet()
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None  # made on first use, again after close

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in one of the runtime's worker threads."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="shoal-docker")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # -- the seam -------------------------------------------------------------------

    async def describe(self) -> NodeDescription:
        info: Inspect = await self._call(lambda: self._api().info())
        labels: dict[str, str] = {}
        for item in info.get("Labels") or []:
            key, _, value = str(item).partition("=")
            labels[key] = value
        return NodeDescription(
            hostname=str(info.get("Name", "")),
            os=str(info.get("OSType", "linux")),
            arch=str(info.get("Architecture", "")),
            nano_cpus=int(info.get("NCPU", 0)) * 1_000_000_000,
            memory_bytes=int(info.get("MemTotal", 0)),
            engine_version=str(info.get("ServerVersion", "")),
            engine_labels=labels,
        )

    async def ensure(self, task: Task) -> Observed:
        return await self._call(self._ensure_sync, task)

    async def stop(self, task_id: str, *, grace: float) -> Observed | None:
        return await self._call(self._stop_sync, task_id, grace)

    async def remove(self, task_id: str) -> None:
        await self._call(self._remove_sync, task_id)

    async def observe(self) -> list[Observed]:
        return await self._call(self._observe_sync)

    def changes(self) -> AsyncIterator[str]:
        """Task ids from the engine's event stream; call it from a coroutine.

        Events are asked for from one second before this call, so nothing that happens
        between the call and the first `await` is missed; a dropped stream is reopened
        from the last event seen. Duplicates are possible, losses are not (as long as the
        engine keeps its event buffer: across an engine restart, rely on `observe()`).
        """
        loop = asyncio.get_running_loop()
        pump = _EventPump(
            api=self._api,
            filters={
                "type": ["container"],
                "event": list(EVENT_ACTIONS),
                "label": self._label_filter(),
            },
            since=time.time() - 1.0,
            forget=self._forget,
        )
        stream = ChangeStream(on_close=pump.stop)
        weakref.finalize(stream, pump.stop)
        pump.start(loop=loop, deliver=_weak_publisher(stream))
        self._streams.add(stream)
        return stream

    async def close(self) -> None:
        for stream in list(self._streams):
            stream.close()
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await self._call(client.close)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            # its threads end before close returns, as the default pool's did at loop close
            await asyncio.to_thread(pool.shutdown, wait=True)

    # -- what the agent's endpoint serves ---------------------------------------------

    async def logs(
        self, task_id: str, *, tail: int | None, timestamps: bool, follow: bool
    ) -> AsyncIterator[LogLine]:
        container_id = await self._call(self._container_of, task_id)
        if follow:
            async for line in follow_logs(
                self._api(), container_id, tail=tail, timestamps=timestamps
            ):
                yield line
            return
        for line in await self._call(
            lambda: read_logs(self._api(), container_id, tail=tail, timestamps=timestamps)
        ):
            yield line

    async def inspect(self, task_id: str) -> dict[str, Any]:
        container_id = await self._call(self._container_of, task_id)
        try:
            info: Inspect = await self._call(lambda: self._api().inspect_container(container_id))
        except docker.errors.NotFound:
            raise UnknownTask(task_id) from None
        return info

    async def kill(self, task_id: str, *, signal: str) -> None:
        container_id = await self._call(self._container_of, task_id)
        try:
            await self._call(lambda: self._api().kill(container_id, signal=signal))
        except docker.errors.NotFound:
            raise UnknownTask(task_id) from None
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # not running: nothing to signal
                return
            raise

    async def images(self) -> list[dict[str, Any]]:
        return await self._call(lambda: image_summaries(self._api()))

    def _container_of(self, task_id: str) -> str:
        found = self._find(task_id)
        if not found:
            raise UnknownTask(task_id)
        return str(found[0]["Id"])

    # -- the work, in worker threads -------------------------------------------------

    def _api(self) -> Any:
        """The low-level API client, connected (and version-negotiated) on first use."""
        with self._client_lock:
            if self._client is None:
                if self._docker_host:
                    self._client = docker.DockerClient(
                        base_url=self._docker_host,
                        version="auto",
                        timeout=self._timeout,
                        max_pool_size=self._workers,
                    )
                else:
                    self._client = docker.from_env(
                        version="auto", timeout=self._timeout, max_pool_size=self._workers
                    )
            return self._client.api

    def _label_filter(self, task_id: str | None = None) -> list[str]:
        labels = [f"{LABEL_CLUSTER}={self.cluster_id}", f"{LABEL_NODE}={self.node_id}"]
        if task_id is not None:
            labels.append(f"{LABEL_TASK}={task_id}")
        return labels

    def _find(self, task_id: str) -> list[Inspect]:
        found: list[Inspect] = self._api().containers(
            all=True, filters={"label": self._label_filter(task_id)}
        )
        return found

    def _ensure_sync(self, task: Task) -> Observed:
        """Create and start the task's container, or adopt the one it already has.

        The executor asks only for tasks it saw no running unit of, so the usual case
        is a new container: create, start, inspect (three engine calls, against the
        floor's two). A container of this task that already exists shows up as the
        name taken (409) and is adopted; a missing image as the create's 404, pulled
        then. Looking both up first cost three more calls per task, each queued on an
        engine that is busy starting containers.
        """
        api = self._api()
        container_id, fresh = self._create_or_adopt(task)
        if not fresh:
            info: Inspect = api.inspect_container(container_id)
            if not _never_started(info):
                return self._remember(info)
        try:
            api.start(container_id)
        except docker.errors.APIError as exc:
            # The engine records why in State.Error; the task fails (not rejected:
            # a port in use or a missing executable may be this node's problem).
            log.info("task %s: starting container failed: %s", task.id, _explain(exc))
        info = api.inspect_container(container_id)
        return self._remember(info)

    def _create_or_adopt(self, task: Task) -> tuple[str, bool]:
        """The task's container id, and whether it was made just now (else adopted)."""
        try:
            return self._create(task)
        except docker.errors.ImageNotFound:
            self._ensure_image(task.spec.image)
        return self._create(task)

    def _ensure_image(self, image: str) -> None:
        api = self._api()
        try:
            api.inspect_image(image)
            return
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.is_client_error():  # e.g. "invalid reference format"
                raise TaskRejected(f"invalid image {image!r}: {_explain(exc)}") from exc
            raise
        outcome: list[BaseException | None] = []

        def pull() -> None:
            try:
                repository, tag = parse_repository_tag(image)
                for line in api.pull(repository, tag=tag, stream=True, decode=True):
                    if isinstance(line, dict) and line.get("error"):
                        raise docker.errors.APIError(str(line["error"]))
                outcome.append(None)
            except BaseException as exc:  # reported to the waiting thread below
                outcome.append(exc)

        # A daemon thread so that a pull stalled in the engine cannot hold the caller
        # (or interpreter exit) for longer than `pull_timeout`.
        puller = threading.Thread(target=pull, name=f"shoal-pull-{image}", daemon=True)
        puller.start()
        puller.join(self.pull_timeout)
        if not outcome:
            raise TaskRejected(
                f"image {image!r} is not on this node and pulling it took longer than "
                f"{self.pull_timeout:g} s"
            )
        error = outcome[0]
        if isinstance(error, docker.errors.APIError):
            raise TaskRejected(
                f"image {image!r} is not on this node and could not be pulled: {_explain(error)}"
            )
        if error is not None:
            raise TaskRejected(
                f"image {image!r} is not on this node and could not be pulled: {error}"
            )

    def _create(self, task: Task) -> tuple[str, bool]:
        """Create the task's container: its id, and True; or, when the task's own
        container holds the name already, that one's id and False."""
        api = self._api()
        spec = task.spec
        exposed: list[tuple[int, str]] = []
        bindings: dict[str, list[tuple[str, int | None]]] = {}
        for port in spec.ports:
            if (port.target, port.protocol) not in exposed:
                exposed.append((port.target, port.protocol))
            host_port = port.published if port.mode is PublishMode.HOST else None
            bindings.setdefault(f"{port.target}/{port.protocol}", []).append(
                (self.advertise_addr, host_port)
            )
        labels = dict(spec.labels)
        labels.update(
            {
                LABEL_CLUSTER: self.cluster_id,
                LABEL_NODE: self.node_id,
                LABEL_SERVICE: task.service,
                LABEL_TASK: task.id,
            }
        )
        if task.slot is not None:
            labels[LABEL_SLOT] = str(task.slot)
        try:
            host_config = api.create_host_config(
                port_bindings=bindings or None,
                restart_policy={"Name": "no"},
                init=True if spec.init else None,
                nano_cpus=spec.nano_cpus_limit or None,
                mem_limit=spec.memory_limit_bytes or None,
            )
            created: Inspect = api.create_container(
                spec.image,
                name=container_name(task),
                entrypoint=spec.command,
                command=spec.args,
                environment=[f"{key}={value}" for key, value in spec.env.items()],
                working_dir=spec.workdir,
                user=spec.user,
                hostname=spec.hostname,
                labels=labels,
                ports=exposed or None,
                stop_signal=spec.stop_signal,
                stop_timeout=math.ceil(spec.stop_grace_seconds),
                healthcheck=_healthcheck(spec.healthcheck),
                host_config=host_config,
                detach=True,
                use_config_proxy=False,
            )
        except docker.errors.ImageNotFound:
            raise  # pulled by the caller, then created again
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                # Same name: this task's container exists (an earlier or a concurrent
                # ensure made it: adopt it), or someone else's container holds the
                # name (never touch it).
                found = self._find(task.id)
                if found:
                    return str(found[0]["Id"]), False
                raise TaskRejected(
                    f"container name {container_name(task)!r} is taken by a container "
                    f"shoal did not create: {_explain(exc)}"
                ) from exc
            if exc.is_client_error():
                raise TaskRejected(f"the engine refused the container: {_explain(exc)}") from exc
            raise
        except docker.errors.DockerException as exc:  # invalid arguments, caught client-side
            raise TaskRejected(f"invalid container spec: {exc}") from exc
        return str(created["Id"]), True

    def _stop_sync(self, task_id: str, grace: float) -> Observed | None:
        api = self._api()
        found = self._find(task_id)
        if not found:
            return None
        container_id = str(found[0]["Id"])
        try:
            # Always ask: the list's state word lags the container (see `_forget`), and
            # the engine answers "not modified" for a container that is not running.
            api.stop(container_id, timeout=max(0, math.ceil(grace)))
            return self._remember(api.inspect_container(container_id))
        except docker.errors.NotFound:
            return None

    def _remove_sync(self, task_id: str) -> None:
        api = self._api()
        for summary in self._find(task_id):
            container_id = str(summary["Id"])
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(container_id, force=True, v=True)
            with self._seen_lock:
                self._seen.pop(container_id, None)

    def _observe_sync(self) -> list[Observed]:
        api = self._api()
        summaries: list[Inspect] = api.containers(all=True, filters={"label": self._label_filter()})
        result: list[Observed] = []
        present: set[str] = set()
        for summary in summaries:
            container_id = str(summary["Id"])
            present.add(container_id)
            with self._seen_lock:
                cached = self._seen.get(container_id)
            if cached is not None and cached[0] == _summary_key(summary):
                result.append(cached[1])
                continue
            try:
                result.append(self._remember(api.inspect_container(container_id)))
            except docker.errors.NotFound:
                present.discard(container_id)
        with self._seen_lock:
            for gone in set(self._seen) - present:
                del self._seen[gone]
        return result

    def _forget(self, container_id: str) -> None:
        """Drop what we knew of a container: the next `observe()` inspects it again.

        Called for every event before its task id is delivered, because the engine's
        container list still says "running" for a moment after it announced "die";
        inspecting the container is what tells the truth at that moment.
        """
        with self._seen_lock:
            self._seen.pop(container_id, None)

    def _remember(self, info: Inspect) -> Observed:
        observed = _observed(info)
        with self._seen_lock:
            self._seen[observed.container_id] = (_inspect_key(info), observed)
        return observed


def _never_started(info: Inspect) -> bool:
    state = info["State"]
    return (
        state.get("Status") == "created"
        and not state.get("Error")
        and parse_docker_time(state.get("StartedAt")) is None
    )


def _observed(info: Inspect) -> Observed:
    """What a container's inspect document means as a task state."""
    labels: dict[str, str] = info["Config"].get("Labels") or {}
    state: Inspect = info["State"]
    status = str(state.get("Status", ""))
    raw_exit = state.get("ExitCode")
    exit_code = int(raw_exit) if raw_exit is not None else None
    error = str(state.get("Error") or "")
    endpoints: tuple[Endpoint, ...] = ()
    message = ""
    needs_stop = False
    if status in _RUNNING_STATES:
        # With a healthcheck, swarm mode's task runs only once its container is healthy.
        health = _health(info)
        task_state = TaskState.STARTING if health == "starting" else TaskState.RUNNING
        exit_code = None
        endpoints = _endpoints(info)
        if status == "paused":
            message = "container is paused"
        if health == "unhealthy":
            task_state, message, needs_stop = TaskState.FAILED, UNHEALTHY, True
    elif status == "created":
        if error:
            task_state = TaskState.FAILED
            message = f"starting container failed: {error}"
        else:
            task_state = TaskState.STARTING
            exit_code = None
    elif state.get("OOMKilled"):
        task_state = TaskState.FAILED
        message = f"task: killed by the kernel's out-of-memory killer (exit {exit_code})"
    elif status == "dead":
        task_state = TaskState.FAILED
        message = f"container is dead: {error or 'the engine could not remove it'}"
    elif exit_code == 0:
        task_state = TaskState.COMPLETE
    else:
        task_state = TaskState.FAILED
        message = f"task: non-zero exit ({exit_code})"
        if error:
            message += f": {error}"
    return Observed(
        task_id=labels.get(LABEL_TASK, ""),
        state=task_state,
        container_id=str(info["Id"]),
        cluster_id=labels.get(LABEL_CLUSTER, ""),
        service=labels.get(LABEL_SERVICE, ""),
        exit_code=exit_code,
        message=message,
        endpoints=endpoints,
        started_at=parse_docker_time(state.get("StartedAt")),
        finished_at=(
            None if task_state is TaskState.RUNNING else parse_docker_time(state.get("FinishedAt"))
        ),
        needs_stop=needs_stop,
    )


# -- health -------------------------------------------------------------------------

_NANOS = 1_000_000_000
_SUMMARY_HEALTH = (("(health: starting)", "starting"), ("(unhealthy)", "unhealthy"))


def _healthcheck(check: HealthCheck | None) -> dict[str, Any] | None:
    """The engine's `Healthcheck` config (durations in nanoseconds); None: the image's."""
    if check is None:
        return None
    if check.disabled:
        return {"Test": ["NONE"]}
    return {
        "Test": list(check.test),
        "Interval": round(check.interval_seconds * _NANOS),
        "Timeout": round(check.timeout_seconds * _NANOS),
        "Retries": check.retries,
        "StartPeriod": round(check.start_period_seconds * _NANOS),
    }


def _health(info: Inspect) -> str:
    """`starting`, `healthy`, `unhealthy`, or "" for a container without a healthcheck."""
    health = info["State"].get("Health") or {}
    return str(health.get("Status") or "")


def _inspect_key(info: Inspect) -> str:
    """What `observe()` compares to skip inspecting: the state word and the health."""
    return f"{info['State'].get('Status', '')}/{_health(info)}"


def _summary_key(summary: Inspect) -> str:
    """The same key from the container list, whose Status text carries the health."""
    text = str(summary.get("Status") or "")
    health = "healthy" if "(healthy)" in text else ""
    for marker, word in _SUMMARY_HEALTH:
        if marker in text:
            health = word
    return f"{summary.get('State', '')}/{health}"


def _endpoints(info: Inspect) -> tuple[Endpoint, ...]:
    """The host ports the engine actually bound, from NetworkSettings.Ports."""
    ports: dict[str, list[dict[str, str]] | None] = (info.get("NetworkSettings") or {}).get(
        "Ports"
    ) or {}
    endpoints: list[Endpoint] = []
    for key, bound in sorted(ports.items()):
        if not bound:
            continue
        target, _, protocol = key.partition("/")
        for binding in bound:
            endpoints.append(
                Endpoint(
                    protocol=protocol or "tcp",
                    target_port=int(target),
                    published_port=int(binding["HostPort"]),
                    host_ip=binding.get("HostIp", ""),
                )
            )
    return tuple(endpoints)


def _weak_publisher(stream: ChangeStream) -> Callable[[str], None]:
    """Publishes into `stream` without keeping it alive (a dropped stream stops the pump)."""
    ref = weakref.ref(stream)

    def publish(task_id: str) -> None:
        target = ref()
        if target is not None:
            target.publish(task_id)

    return publish


class _EventPump:
    """One thread reading the engine's event stream, reopening it when it drops."""

    RETRY_MIN = 0.2
    RETRY_MAX = 5.0

    def __init__(
        self,
        *,
        api: Callable[[], Any],
        filters: dict[str, Any],
        since: float,
        forget: Callable[[str], None],
    ) -> None:
        self._api = api
        self._filters = filters
        self._since = since
        self._forget = forget
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._stream: Any = None

    def start(self, *, loop: asyncio.AbstractEventLoop, deliver: Callable[[str], None]) -> None:
        thread = threading.Thread(
            target=self._run, args=(loop, deliver), name="shoal-docker-events", daemon=True
        )
        thread.start()

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            _close_quietly(stream)

    def _run(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[str], None]) -> None:
        retry = self.RETRY_MIN
        while not self._stopped.is_set():
            try:
                for task_id in self._events():
                    loop.call_soon_threadsafe(deliver, task_id)
                    retry = self.RETRY_MIN
            except RuntimeError:  # the loop is closed: nobody is listening any more
                return
            except Exception as exc:  # the engine went away; try again shortly
                log.debug("docker event stream: %s", exc)
            if self._stopped.wait(retry):
                return
            retry = min(retry * 2, self.RETRY_MAX)

    def _events(self) -> Iterator[str]:
        stream = self._api().events(since=f"{self._since:.9f}", filters=self._filters, decode=True)
        with self._lock:
            if self._stopped.is_set():
                _close_quietly(stream)
                return
            self._stream = stream
        try:
            for event in stream:
                if self._stopped.is_set():
                    return
                time_nano = event.get("timeNano")
                if time_nano:
                    self._since = int(time_nano) / 1e9
                actor = event.get("Actor") or {}
                if actor.get("ID"):
                    self._forget(str(actor["ID"]))
                task_id = (actor.get("Attributes") or {}).get(LABEL_TASK)
                if task_id:
                    yield str(task_id)
        finally:
            with self._lock:
                if self._stream is stream:
                    self._stream = None
            _close_quietly(stream)


def _close_quietly(stream: Any) -> None:
    try:
        stream.close()
    except Exception as exc:  # already closed by the engine or by the other thread
        log.debug("closing the docker event stream: %s", exc)
