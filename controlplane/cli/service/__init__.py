"""`shoal service`: create, list, inspect, update, scale, roll back and remove services,
and read their logs.

One module per verb (or pair of verbs); this module only assembles the group:

- `flags`: the options `create` and `update` share, and how their values are read;
- `names`: SERVICE arguments and their shell completion;
- `create`, `update`, `lifecycle` (scale, rollback, rm), `listing` (ls), `tasks` (ps,
  shared with `stack ps`), `inspect`, `logs`;
- `converge`: waiting until a change has converged, with progress on stderr.

`create`, `update`, `scale` and `rollback` wait until the service has converged, unless
`--detach`; Ctrl-C stops the waiting, never the deployment, which the leader carries on.
"""

from __future__ import annotations

import typer

from controlplane.cli.service import create, inspect, lifecycle, listing, logs, tasks, update

app = typer.Typer(name="service", help="Manage services.", no_args_is_help=True)

app.command("create", context_settings={"allow_interspersed_args": False})(create.create)
app.command("update")(update.update)
app.command("scale")(lifecycle.scale)
app.command("rollback")(lifecycle.rollback)
app.command("rm")(lifecycle.remove)
app.command("logs")(logs.logs)
app.command("ls")(listing.list_services)
app.command("ps")(tasks.list_tasks)
app.command("inspect")(inspect.inspect)
