"""Compose files as shoal services: what `shoal stack deploy -c FILE NAME` deploys.

Pure: no network, no manager. `load_stack(files, name=..., environ=..., workdir=...)`
reads one or more compose files (merged in order, like `docker stack deploy -c a.yml
-c b.yml`), substitutes `${VAR}` from the mapping it is given (`interpolate`), checks
each file against the Compose specification's JSON schema (`schema`: the maintained copy
shipped inside the installed `check-jsonschema` package,
`check_jsonschema/builtin_schemas/vendor/compose-spec.json`, loaded with
`importlib.resources`), and converts the services to `ServiceSpec`s named
`<stack>_<service>` and labelled `com.docker.stack.namespace=<stack>` (`convert`).

What swarm mode ignores is a warning naming the key; what it refuses is an error. Every
problem names the file, the line and the key, because PyYAML's node marks are kept on
every value (`source`): `docker-compose.yml:12: services.web.deploy.replicas: 'five' is
not an integer`.

Pipeline: source (YAML with lines) -> interpolate -> schema -> merge -> convert.
"""

from controlplane.compose.convert import NAMESPACE_LABEL, check_stack_name
from controlplane.compose.loader import ComposeFile, Stack, load_stack, load_stack_files
from controlplane.compose.problems import ComposeError, Location, Problem

__all__ = [
    "NAMESPACE_LABEL",
    "ComposeError",
    "ComposeFile",
    "Location",
    "Problem",
    "Stack",
    "check_stack_name",
    "load_stack",
    "load_stack_files",
]
