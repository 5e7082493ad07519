"""Fields of type MicroTime, which the API server decodes only with six digits of fractional seconds.

`metav1.MicroTime` parses with the layout `2006-01-02T15:04:05.000000Z07:00`, so `2024-01-01T00:00:00Z`
is refused where a `metav1.Time` would take it: the request is a 400 naming the layout element that
did not match, in Go's words.
"""

from __future__ import annotations

import re
from typing import Any

from kubesim.errors import bad_request

LAYOUT = "2006-01-02T15:04:05.000000Z07:00"

# The layout's elements, each with the pattern of what it accepts at that point.
_ELEMENTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (element, re.compile(pattern))
    for element, pattern in (
        ("2006", r"\d{4}"),
        ("-", "-"),
        ("01", r"\d{2}"),
        ("-", "-"),
        ("02", r"\d{2}"),
        ("T", "T"),
        ("15", r"\d{2}"),
        (":", ":"),
        ("04", r"\d{2}"),
        (":", ":"),
        ("05", r"\d{2}"),
        (".000000", r"[.,]\d{6}"),
        ("Z07:00", r"Z|[+-]\d{2}:\d{2}"),
    )
)

# Where each kind has MicroTime fields, by (group, kind).
MICRO_TIME_FIELDS: dict[tuple[str, str], tuple[tuple[str, ...], ...]] = {
    ("", "Event"): (("eventTime",), ("series", "lastObservedTime")),
    ("events.k8s.io", "Event"): (("eventTime",), ("series", "lastObservedTime")),
    ("coordination.k8s.io", "Lease"): (("spec", "acquireTime"), ("spec", "renewTime")),
}


def parse_problem(value: str) -> str | None:
    """Go's error for a MicroTime that does not parse (`cannot parse "Z" as ".000000"`), else None."""
    rest = value
    for element, pattern in _ELEMENTS:
        match = pattern.match(rest)
        if match is None:
            return f'parsing time "{value}" as "{LAYOUT}": cannot parse "{rest}" as "{element}"'
        rest = rest[match.end() :]
    if rest:
        return f'parsing time "{value}": extra text: "{rest}"'
    return None


def check_micro_times(group: str, version: str, kind: str, obj: dict[str, Any]) -> None:
    """Refuse (400) an object whose MicroTime fields do not parse, as decoding it would."""
    for path in MICRO_TIME_FIELDS.get((group, kind), ()):
        value: Any = obj
        for step in path:
            value = value.get(step) if isinstance(value, dict) else None
        if isinstance(value, str):
            problem = parse_problem(value)
            if problem is not None:
                raise bad_request(f'{kind} in version "{version}" cannot be handled as a {kind}: {problem}')
