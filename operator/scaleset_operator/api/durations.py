"""Durations as users write them (30s, 15m, 1h30m, 2d, or ISO 8601 PT30M) and their parsing."""

from __future__ import annotations

import re
from datetime import timedelta

_GO_STYLE = r"(\d+(\.\d+)?(ms|s|m|h|d))+"
_ISO_STYLE = r"P(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?"
DURATION_PATTERN = rf"^({_GO_STYLE}|{_ISO_STYLE})$"

_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_ISO = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> timedelta:
    """Parse a duration; raise ValueError naming the text when it is not one."""
    if re.fullmatch(_GO_STYLE, text):
        return timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in _GO_PART.findall(text)))
    iso = _ISO.match(text)
    if iso and text not in ("P", "PT"):
        days, hours, minutes, seconds = iso.groups()
        return timedelta(
            days=int(days or 0), hours=int(hours or 0), minutes=int(minutes or 0), seconds=float(seconds or 0)
        )
    raise ValueError(f"{text!r} is not a duration (use e.g. 30s, 15m, 1h30m, 2d or PT30M)")


def format_duration(delta: timedelta) -> str:
    """Render a timedelta the short way a person reads it: 1h30m, 45s, 2d."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)
