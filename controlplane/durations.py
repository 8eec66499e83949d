"""Durations in the words docker prints them: `Up 5 minutes`, `3 hours ago`.

One wording for the CLI's tables (`service ps`: "Running 5 minutes ago") and the
Docker-compatible API (`docker ps`: "Up About a minute"), so the two never disagree.
"""

from __future__ import annotations


def human_duration(seconds: float) -> str:
    """An age in docker's words: "Less than a second", "About a minute", "3 hours"."""
    if seconds < 1:
        return "Less than a second"
    if seconds < 2:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = seconds / 60
    if minutes < 2:
        return "About a minute"
    if minutes < 60:
        return f"{int(minutes)} minutes"
    hours = minutes / 60
    if hours < 2:
        return "About an hour"
    if hours < 48:
        return f"{int(hours)} hours"
    days = hours / 24
    if days < 14:
        return f"{int(days)} days"
    if days < 60:
        return f"{int(days / 7)} weeks"
    if days < 365 * 2:
        return f"{int(days / 30)} months"
    return f"{int(days / 365)} years"
