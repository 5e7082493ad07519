"""SVG drawings of a rollout: one row per upgrade domain, what happened to it as boxes on a time axis.

`scaleset plan -o svg` draws the planned batches, `scaleset history NAME --svg FILE` a finished
upgrade. The drawing is a dozen elements of plain SVG, written with the standard library's
ElementTree: every box carries a <title> (a browser shows it on hover) naming its instances.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from scaleset_operator.api.durations import format_duration

SVG_NS = "http://www.w3.org/2000/svg"

WIDTH = 960
LEFT = 150  # the row labels
RIGHT = 24
TOP = 64  # the title and subtitle
ROW = 34
AXIS = 40
MIN_BOX = 5.0  # a batch that takes no time still shows
_CHAR = 6.2  # the width of one character of an 11px label, near enough

STYLE = """
text { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; font-size: 12px; fill: #222; }
.title { font-size: 16px; font-weight: 600; }
.subtitle { fill: #555; }
.row { fill: #f4f6f8; }
.row-label { font-weight: 600; }
.row-count { fill: #666; font-size: 11px; }
.axis line { stroke: #999; }
.axis text { fill: #666; font-size: 11px; }
.batch rect { fill: #3b6ea8; }
.batch.shrunk rect { fill: #d9822b; }
.batch text { fill: #fff; font-size: 11px; text-anchor: middle; }
.upgrade rect { fill: #dfe7ef; stroke: #9fb3c8; }
.upgrade.RolledBack rect, .upgrade.Failed rect { fill: #f6dcdc; stroke: #d58b8b; }
.instance rect { fill: #3b6ea8; }
"""

BoxKind = Literal["batch", "upgrade", "instance"]


@dataclass(frozen=True)
class Box:
    """One thing drawn on the axis: a batch, an upgrade's span, or one instance's update."""

    upgrade_domain: int | None  # None: it spans every domain (Automatic mode's batch, a whole upgrade)
    start: float  # seconds from the drawing's origin (or a position, on an axis of batch order)
    end: float
    title: str  # names the instances; a browser shows it on hover
    label: str = ""
    kind: BoxKind = "batch"
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Drawing:
    """What to draw: the upgrade domains with their instances, and the boxes in the order they go."""

    title: str
    subtitle: str
    upgrade_domains: list[list[str]]
    boxes: list[Box] = field(default_factory=list)
    axis: Literal["time", "order"] = "time"
    origin_label: str = ""  # what time 0 is, said under the axis


def _tick_step(span: float) -> float:
    """A round step that puts about six ticks on the axis: 1, 2, 5, 10 ... seconds, minutes or hours."""
    raw = span / 6
    for unit in (1, 60, 3600, 86400):
        for step in (1, 2, 5, 10, 15, 30):
            if unit * step >= raw:
                return float(unit * step)
    return float(86400 * math.ceil(raw / 86400))


def render_svg(drawing: Drawing) -> str:
    """The drawing as an SVG document."""
    rows = max(len(drawing.upgrade_domains), 1)
    height = TOP + rows * ROW + AXIS + (16 if drawing.origin_label else 0)
    svg = ET.Element(
        "svg",
        {
            "xmlns": SVG_NS,
            "width": str(WIDTH),
            "height": str(height),
            "viewBox": f"0 0 {WIDTH} {height}",
            "role": "img",
        },
    )
    ET.SubElement(svg, "title").text = drawing.title
    ET.SubElement(svg, "style").text = STYLE
    _text(svg, 12, 24, drawing.title, "title")
    _text(svg, 12, 44, drawing.subtitle, "subtitle")

    plot = WIDTH - LEFT - RIGHT
    end = max((box.end for box in drawing.boxes), default=0.0)
    span = end if end > 0 else 1.0

    def x(at: float) -> float:
        return LEFT + plot * at / span

    for index, instances in enumerate(drawing.upgrade_domains):
        row = ET.SubElement(svg, "g", {"class": "upgrade-domain", "data-upgrade-domain": str(index)})
        ET.SubElement(row, "title").text = f"Upgrade domain {index}: {', '.join(instances) or 'no instance'}"
        top = TOP + index * ROW
        _rect(row, LEFT, top + 2, plot, ROW - 4, "row")
        _text(row, 12, top + ROW / 2, f"Upgrade domain {index}", "row-label")
        names = ", ".join(instances)
        fits = names and _CHAR * len(names) <= LEFT - 16
        _text(row, 12, top + ROW / 2 + 13, names if fits else f"{len(instances)} instance(s)", "row-count")

    _axis(svg, drawing, span, x, TOP + rows * ROW)

    for number, box in enumerate(drawing.boxes, start=1):
        classes = " ".join((box.kind, *box.classes))
        group = ET.SubElement(
            svg,
            "g",
            {
                "class": classes,
                "data-order": str(number),
                "data-upgrade-domain": "" if box.upgrade_domain is None else str(box.upgrade_domain),
            },
        )
        ET.SubElement(group, "title").text = box.title
        if box.upgrade_domain is None:
            top, tall = TOP + 4, rows * ROW - 8
        else:
            inset = 12 if box.kind == "instance" else 6
            top, tall = TOP + box.upgrade_domain * ROW + inset, ROW - 2 * inset
        left = x(box.start)
        wide = max(x(box.end) - left, MIN_BOX)
        _rect(group, left, top, wide, tall)
        if box.label and wide >= _CHAR * len(box.label) + 8:
            _text(group, left + wide / 2, top + tall / 2 + 4, box.label)
    return ET.tostring(svg, encoding="unicode", xml_declaration=True) + "\n"


def _axis(svg: ET.Element, drawing: Drawing, span: float, x: Callable[[float], float], bottom: float) -> None:
    axis = ET.SubElement(svg, "g", {"class": "axis"})
    ET.SubElement(axis, "line", _numbers(x1=LEFT, y1=bottom + 4, x2=WIDTH - RIGHT, y2=bottom + 4))
    if drawing.axis == "order":
        for number, box in enumerate(drawing.boxes, start=1):
            middle = x((box.start + box.end) / 2)
            _text(axis, middle, bottom + 20, str(number), anchor="middle")
        _text(axis, LEFT, bottom + 36, "batches in the order they go", anchor="start")
        return
    step = _tick_step(span)
    tick = 0.0
    while tick <= span + 1e-9:
        at = x(tick)
        ET.SubElement(axis, "line", _numbers(x1=at, y1=bottom + 4, x2=at, y2=bottom + 9))
        _text(axis, at, bottom + 22, format_duration(timedelta(seconds=tick)), anchor="middle")
        tick += step
    if drawing.origin_label:
        _text(axis, LEFT, bottom + 38, drawing.origin_label, anchor="start")


def _numbers(**values: float) -> dict[str, str]:
    return {key: f"{value:.1f}" for key, value in values.items()}


def _rect(parent: ET.Element, left: float, top: float, wide: float, tall: float, css: str = "") -> None:
    attributes = _numbers(x=left, y=top, width=wide, height=tall)
    attributes["rx"] = "3"
    if css:
        attributes["class"] = css
    ET.SubElement(parent, "rect", attributes)


def _text(
    parent: ET.Element, left: float, baseline: float, text: str, css: str = "", anchor: str = ""
) -> None:
    attributes = _numbers(x=left, y=baseline)
    if css:
        attributes["class"] = css
    if anchor:
        attributes["text-anchor"] = anchor
    ET.SubElement(parent, "text", attributes).text = text
