"""From compose files to a `Stack`: read, interpolate, validate, merge, convert.

Each file is interpolated and validated on its own (so a schema error points into the
file that has it), then the files are merged in order and converted. Every error of
every step is collected and raised together as one `ComposeError`; warnings travel
with the result so the CLI can print them before it deploys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controlplane.compose.convert import Findings, check_stack_name, convert_stack
from controlplane.compose.interpolate import Interpolator
from controlplane.compose.merge import merge_files
from controlplane.compose.problems import ComposeError, Problem, in_file_order
from controlplane.compose.schema import schema_problems
from controlplane.compose.source import Mapping as Located
from controlplane.compose.source import parse
from controlplane.models import ServiceSpec


@dataclass(frozen=True, slots=True)
class ComposeFile:
    """One file's text, and the name problems call it by (as the user wrote it)."""

    name: str
    text: str

    @classmethod
    def read(cls, path: str | Path) -> ComposeFile:
        try:
            return cls(name=str(path), text=Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ComposeError([Problem(None, (), f"{path}: no such file")]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ComposeError([Problem(None, (), f"{path}: cannot read it: {exc}")]) from None


@dataclass(frozen=True, slots=True)
class Stack:
    name: str
    services: list[ServiceSpec]
    warnings: list[Problem] = field(default_factory=list)


def load_stack(
    files: Sequence[ComposeFile],
    *,
    name: str,
    environ: Mapping[str, str],
    workdir: Path,
) -> Stack:
    """The stack `name` described by `files` (merged in order).

    `environ` is what `${VAR}` reads; `workdir` is where relative `env_file` paths start
    (Docker uses the first file's directory). Raises `ComposeError` with every problem.
    """
    try:
        check_stack_name(name)
    except ValueError as exc:
        raise ComposeError([Problem(None, (), str(exc))]) from None
    if not files:
        raise ComposeError([Problem(None, (), "no compose file given")])
    broken: list[Problem] = []  # the file cannot be read as a compose file at all
    unresolved: list[Problem] = []  # a variable is missing: the rest can still be checked
    warnings: list[Problem] = []
    documents: list[Located] = []
    for file in files:
        try:
            parsed = parse(file.text, name=file.name)
        except ComposeError as exc:
            broken.extend(exc.problems)
            continue
        interpolator = Interpolator(environ)
        document = interpolator.tree(parsed, (), parsed.location)
        unresolved.extend(interpolator.errors)
        warnings.extend(interpolator.warnings)
        broken.extend(schema_problems(document))
        documents.append(document)
    if broken:
        raise ComposeError([*unresolved, *broken])
    findings = Findings(merge_files(documents))
    specs = convert_stack(
        findings.document, stack=name, environ=environ, workdir=workdir, findings=findings
    )
    if unresolved or findings.errors:
        raise ComposeError([*unresolved, *findings.errors])
    return Stack(name=name, services=specs, warnings=in_file_order([*warnings, *findings.warnings]))


def load_stack_files(
    paths: Sequence[str | Path], *, name: str, environ: Mapping[str, str]
) -> Stack:
    """`load_stack` for files on disk, relative `env_file`s from the first file's folder."""
    files = [ComposeFile.read(path) for path in paths]
    workdir = Path(paths[0]).parent if paths else Path.cwd()
    return load_stack(files, name=name, environ=environ, workdir=workdir)
