"""kopf event handlers that feed the metrics collector with every ScaleSet and instance pod seen."""

from __future__ import annotations

from typing import Any

import kopf

from scaleset_operator import metrics
from scaleset_operator.api.models import GROUP, VERSION
from scaleset_operator.identity import LABEL_SCALESET


@kopf.on.event(GROUP, VERSION, "scalesets")
def scaleset_seen(body: kopf.Body, type: str | None, **_: Any) -> None:
    metrics.FLEET.observe_scaleset(body, deleted=type == "DELETED")


@kopf.on.event("", "v1", "pods", labels={LABEL_SCALESET: kopf.PRESENT})
def instance_seen(body: kopf.Body, type: str | None, **_: Any) -> None:
    metrics.FLEET.observe_pod(body, deleted=type == "DELETED")
