"""Talking to a manager: where it is, which token to send, and failures in plain words.

Where: `--host`, else `SHOAL_HOST`, else the config file's `host`, else
`http://127.0.0.1:2377`. The token: `SHOAL_TOKEN`, else the config file's `token` — but
the saved token only goes to the manager it was saved for, so pointing `--host` at
another cluster never hands it this cluster's credential.

Every command is `@reported`: the one place where failures become a sentence on
stderr and an exit code (0 ok, 1 the operation failed, 2 a usage error): an unreachable
manager, a refused token, a 404, a 422 listing each refused field. A traceback is shown
only with `--debug`, which also logs each request.
"""

from __future__ import annotations

import functools
import os
import ssl
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import httpx
import typer

from controlplane.cli.config import ConfigError, config_path, load_config
from controlplane.tls import (
    CERT_ENV,
    KEY_ENV,
    TlsError,
    TlsFiles,
    client_context,
    client_files_from_env,
    describe_failure,
)

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_HOST = "http://127.0.0.1:2377"
HOST_ENV = "SHOAL_HOST"
TOKEN_ENV = "SHOAL_TOKEN"
TIMEOUT_SECONDS = 30.0

HostOption = Annotated[
    str | None,
    typer.Option(
        "--host",
        "-H",
        envvar=HOST_ENV,
        metavar="URL",
        help=f"The manager to talk to (default: the config file's, else {DEFAULT_HOST}).",
        show_default=False,
    ),
]
DebugOption = Annotated[
    bool,
    typer.Option("--debug", envvar="SHOAL_DEBUG", help="Log requests; show tracebacks."),
]


class CliError(Exception):
    """A failure to report in one sentence; `exit_code` 1 (failed) or 2 (usage)."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def normalize_host(text: str) -> str:
    """`127.0.0.1:2377`, `tcp://h:2377` or `http://h:2377/` -> `http://h:2377`."""
    host = text.strip().rstrip("/")
    if host.startswith("tcp://"):
        host = "http://" + host.removeprefix("tcp://")
    if "://" not in host:
        host = f"http://{host}"
    if not host.startswith(("http://", "https://")):
        raise CliError(f"--host {text!r}: use http://HOST:PORT or https://HOST:PORT", exit_code=2)
    return host


@dataclass(frozen=True, slots=True)
class Target:
    """The manager to call and the credential for it."""

    host: str
    token: str | None
    token_source: str  # "SHOAL_TOKEN", the config file's path, or "" when none


def resolve_target(host: str | None) -> Target:
    host = _given_host(host)
    try:
        config = load_config()
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    saved_host = normalize_host(config.host) if config.host else None
    chosen = normalize_host(host) if host else saved_host or DEFAULT_HOST
    env_token = os.environ.get(TOKEN_ENV)
    if env_token:
        return Target(host=chosen, token=env_token, token_source=TOKEN_ENV)
    if config.token and chosen == (saved_host or DEFAULT_HOST):
        return Target(host=chosen, token=config.token, token_source=str(config_path()))
    return Target(host=chosen, token=None, token_source="")


#: `shoal --host URL COMMAND`'s URL while COMMAND runs (set by the root command).
root_host: ContextVar[str | None] = ContextVar("root_host", default=None)
#: `shoal --tlscacert/--tlscert/--tlskey ... COMMAND`'s files (each else `SHOAL_TLS_*`).
root_tls: ContextVar[TlsFiles | None] = ContextVar("root_tls", default=None)


def tls_verify(host: str, files: TlsFiles) -> ssl.SSLContext | bool:
    """What an `https://` manager is checked with (`True`: httpx's default, for plain
    http); a `CliError` (usage) naming the option when a TLS file cannot be used."""
    if not host.startswith("https://"):
        return True
    try:
        return client_context(files)
    except TlsError as exc:
        raise CliError(str(exc), exit_code=2) from None


def _given_host(host: str | None) -> str | None:
    """The command's `host`, unless it had none of its own (none, or SHOAL_HOST's)
    and `shoal --host URL COMMAND` named one: a flag beats the environment."""
    before_command = root_host.get()
    if before_command and (host is None or host == os.environ.get(HOST_ENV)):
        return before_command
    return host


class ManagerClient:
    """A manager's REST API, synchronously; every failure raises `CliError`."""

    def __init__(
        self,
        target: Target,
        *,
        debug: bool = False,
        timeout: float = TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
        hooks = {"response": [_log_response]} if debug else {}
        files = client_files_from_env(root_tls.get())
        verify = tls_verify(target.host, files)
        #: https without a client certificate of ours (what a refusal may be about)
        self._bare_tls = isinstance(verify, ssl.SSLContext) and not files.cert
        self._http = httpx.Client(
            base_url=target.host,
            verify=verify,
            headers=headers,
            timeout=timeout,
            transport=transport,
            event_hooks=hooks,
        )

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, *, params: Mapping[str, str] | None = None) -> Any:
        return self._call("GET", path, params=params)

    def post(self, path: str, body: Any = None, *, params: Mapping[str, str] | None = None) -> Any:
        return self._call("POST", path, body=body, params=params)

    def delete(self, path: str, *, params: Mapping[str, str] | None = None) -> Any:
        return self._call("DELETE", path, params=params)

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        try:
            response = self._http.request(method, path, json=body, params=params)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.status_code == 204:
            return None
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise CliError(
                    f"{self.target.host} answered {method} {path} with something that is "
                    "not JSON: is it a shoal manager?"
                ) from None
        raise CliError(self._refusal(response))

    @contextmanager
    def stream_lines(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        endless: bool = False,
        not_served: str = "",
    ) -> Iterator[Iterator[str]]:
        """GET `path` and read the answer line by line as it arrives (`endless`: no read
        timeout, for answers that stay open). A 404 from a manager that has no such
        route says `not_served`, when given; a lost connection is a `CliError` too."""
        timeout = httpx.Timeout(self.timeout, read=None) if endless else self.timeout
        try:
            with self._http.stream("GET", path, params=params, timeout=timeout) as response:
                if not response.is_success:
                    response.read()
                    missing = response.status_code == 404 and _detail(response) in ("", "Not Found")
                    if missing and not_served:
                        raise CliError(not_served)
                    raise CliError(self._refusal(response))
                yield response.iter_lines()
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: httpx.TransportError) -> CliError:
        if isinstance(exc, httpx.TimeoutException):
            return CliError(
                f"the manager at {self.target.host} did not answer within {self.timeout:g} s"
            )
        tls_failure = describe_failure(exc)
        if tls_failure is None and self._bare_tls and isinstance(exc, httpx.RemoteProtocolError):
            # TLS 1.3: a manager that wants a client certificate hangs up after the handshake
            tls_failure = (
                "it closed the connection, as a manager that requires a client certificate "
                f"does (give --tlscert and --tlskey, or {CERT_ENV} and {KEY_ENV})"
            )
        if tls_failure is not None:
            return CliError(f"cannot talk to the manager at {self.target.host}: {tls_failure}")
        return CliError(
            f"cannot reach the manager at {self.target.host}: {_reason(exc)}; "
            "is `shoal manager` running?"
        )

    def _refusal(self, response: httpx.Response) -> str:
        detail = _detail(response)
        code = response.status_code
        if code == 401:
            if self.target.token is None:
                return (
                    "not authorised: set SHOAL_TOKEN to the cluster's API token "
                    "(printed by `shoal swarm init`, which also saves it in the config file)"
                )
            return (
                f"not authorised: set SHOAL_TOKEN; the manager refused the token from "
                f"{self.target.token_source} ({detail})"
            )
        if code == 404 and detail in ("", "Not Found"):  # no such route, not a missing object
            return (
                f"{self.target.host} has no {response.request.url.path}: is it a shoal "
                "manager, and as new as this shoal?"
            )
        if code >= 500 and code != 503:
            return f"the manager failed (HTTP {code}): {detail or response.reason_phrase}"
        return detail or f"HTTP {code} {response.reason_phrase}"


def completion_get(path: str, **params: str) -> Any:
    """A quiet read for shell completion: the manager's answer, or None on any failure
    (a completion must never print an error or hang the shell)."""
    try:
        client = ManagerClient(resolve_target(os.environ.get(HOST_ENV)), timeout=2.0)
    except CliError:
        return None
    try:
        return client.get(path, params=params or None)
    except CliError:
        return None
    finally:
        client.close()


def _detail(response: httpx.Response) -> str:
    """The API's `detail`: a sentence, or for a 422 one `field: message` per refusal."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        lines = []
        for item in detail:
            if not isinstance(item, dict):
                continue
            where = _field(item.get("loc", []))
            lines.append(f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", "")))
        return "\n".join(lines)
    return ""


def _field(loc: Any) -> str:
    """`["body", "placement", "constraints", 0]` -> `placement.constraints[0]`."""
    parts = [part for part in loc if part not in ("body", "query", "path")]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _reason(exc: httpx.TransportError) -> str:
    text = str(exc)
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return "unknown host name"
    if "no route" in lowered or "unreachable" in lowered:
        return "no route to host"
    return text or type(exc).__name__


def _log_response(response: httpx.Response) -> None:
    request = response.request
    print(f"debug: {request.method} {request.url} -> {response.status_code}", file=sys.stderr)


# --- running a command ----------------------------------------------------------------


def fail(message: str, *, exit_code: int = 1) -> NoReturn:
    raise CliError(message, exit_code=exit_code)


@contextmanager
def errors_reported(debug: bool) -> Iterator[None]:
    """Turn any failure inside into a message on stderr and an exit code."""
    try:
        yield
    except (typer.Exit, typer.Abort, typer.TyperException):  # typer reports these itself
        raise
    except CliError as exc:
        typer.echo(f"shoal: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("shoal: interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:
        if debug:
            raise
        typer.echo(
            f"shoal: unexpected error: {type(exc).__name__}: {exc} "
            "(run again with --debug for the traceback)",
            err=True,
        )
        raise typer.Exit(1) from None


def reported(command: Callable[P, R]) -> Callable[P, R]:
    """Decorate a command so that anything it raises is reported for people (its
    `debug` argument, if any, lets tracebacks through). Typer reads the signature
    through the wrapper, so options are declared on the command as usual."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with errors_reported(bool(kwargs.get("debug", False))):
            return command(*args, **kwargs)

    return run


@contextmanager
def session(host: str | None, debug: bool) -> Iterator[ManagerClient]:
    """A client for the chosen manager (commands are `@reported`: failures inside are
    reported for people)."""
    client = ManagerClient(resolve_target(host), debug=debug)
    try:
        yield client
    finally:
        client.close()
