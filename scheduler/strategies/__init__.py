"""The built-in placement strategies: spread (the default), binpack, random."""

from __future__ import annotations

from scheduler.strategies.base import Strategy, StrategyBase
from scheduler.strategies.binpack import BinpackStrategy
from scheduler.strategies.random import RandomStrategy
from scheduler.strategies.spread import SpreadStrategy

DEFAULT_STRATEGY = "spread"

__all__ = [
    "DEFAULT_STRATEGY",
    "BinpackStrategy",
    "RandomStrategy",
    "SpreadStrategy",
    "Strategy",
    "StrategyBase",
]
