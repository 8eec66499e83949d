"""shoal's scheduler: where each task goes, and why not when it cannot go anywhere.

The scheduler is a pure function. The leader's reconciler hands it placement requests
(one per task to place) and a view of every node, and gets back assignments and, for each
task it could not place, a sentence a user can act on ("3 nodes not available (drained);
2 nodes lack 512 MiB memory"). It reads no store, calls no Docker, and has no clock.

The pipeline, per request:

    requests ──> group by feasibility key ──> static filters (once per pass and key)
                                               │  ready, platform, constraint
                                               ▼
                 heap of candidates, keyed by the strategy (spread, binpack, random),
                 under placement preferences (spread over label values first)
                                               │
                                               ▼
                 top node ──> dynamic filters ──> place: node view updated
                              affinity, max-replicas,   (later requests see it)
                              host-ports, resources
                 nothing fits ──> drop soft rules, retry ──> explain per filter

Where to change what:

* a placement rule: a new filter is one module in `scheduler/filters/` (the `Filter`
  protocol in `filters/base.py`) and one line in `DEFAULT_FILTERS` or the configuration;
  third parties register theirs under the entry-point group `shoal.filters`;
* the order among fitting nodes: `scheduler/strategies/` (`shoal.strategies`);
* constraint and affinity syntax: `scheduler/constraints.py`, which the manager also calls
  at service creation so that a typo is refused there;
* what a task or a node looks like to the scheduler: `request.py`, `nodes.py`;
* speed: `candidates.py` (lazy heaps), `pipeline.py` (groups, shared static filters).
"""

from __future__ import annotations

from scheduler.constraints import (
    Affinity,
    Constraint,
    ConstraintError,
    Preference,
    parse_affinity,
    parse_constraint,
    parse_preference,
    validate_constraints,
)
from scheduler.filters import DEFAULT_FILTERS, Filter, FilterBase
from scheduler.nodes import NodeView
from scheduler.pipeline import Pipeline, PlacementResult, explain
from scheduler.registry import (
    FILTER_GROUP,
    STRATEGY_GROUP,
    RegistryError,
    filter_names,
    load_filters,
    load_pipeline,
    load_strategy,
    strategy_names,
)
from scheduler.request import PlacementRequest, Platform, PortRequest, Resources
from scheduler.strategies import DEFAULT_STRATEGY, Strategy, StrategyBase

__all__ = [
    "DEFAULT_FILTERS",
    "DEFAULT_STRATEGY",
    "FILTER_GROUP",
    "STRATEGY_GROUP",
    "Affinity",
    "Constraint",
    "ConstraintError",
    "Filter",
    "FilterBase",
    "NodeView",
    "Pipeline",
    "PlacementRequest",
    "PlacementResult",
    "Platform",
    "PortRequest",
    "Preference",
    "RegistryError",
    "Resources",
    "Strategy",
    "StrategyBase",
    "explain",
    "filter_names",
    "load_filters",
    "load_pipeline",
    "load_strategy",
    "parse_affinity",
    "parse_constraint",
    "parse_preference",
    "strategy_names",
    "validate_constraints",
]
