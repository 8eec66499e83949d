"""The manager process: what runs behind `shoal manager`, leader or not.

Every manager opens the store, keeps a mirror of it (`controlplane.state`), registers
itself under `managers/<id>` on its own lease (`registration`), serves the REST API
(`controlplane.api`, via `server`), and campaigns for leadership (`leading`). Only
while it leads does it run the reconciler, with the term's fencing token; the moment
the term ends the reconciler is cancelled and the manager campaigns again.

`process.Manager` wires these together and owns their lifecycle; `config` holds the
settings. A manager keeps nothing the store does not have, so any manager may be killed
at any moment and another one carries on.
"""

from controlplane.manager.config import ManagerConfig
from controlplane.manager.process import Manager

__all__ = ["Manager", "ManagerConfig"]
