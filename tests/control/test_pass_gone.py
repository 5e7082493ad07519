"""A ScaleSet deleted while its pass runs: the status write answers 404, and the pass ends as Gone (its
loop ends) without another write."""

from __future__ import annotations

from fake_kube import FakeKube
from scaleset_fixtures import SCALESET_PATH, T0, scaleset

from scaleset_operator.control.reconcile import Reconciler

LISTS = [
    "/apis/apps/v1/namespaces/shop/controllerrevisions",
    "/api/v1/namespaces/shop/pods",
    "/api/v1/namespaces/shop/persistentvolumeclaims",
    "/apis/fleet.scaleset.dev/v1alpha1/maintenanceconfigurations",
    "/apis/fleet.scaleset.dev/v1alpha1/imagecatalogs",
    "/api/v1/nodes",
]


def test_a_scaleset_deleted_during_its_pass_ends_it_as_gone() -> None:
    kube = FakeKube({SCALESET_PATH: scaleset(), **{path: {"items": []} for path in LISTS}})
    kube.refuse("PATCH", f"{SCALESET_PATH}/status", 404)
    outcome = Reconciler(kube, clock=lambda: T0).reconcile("shop", "web")
    assert (outcome.step, outcome.requeue_after) == ("Gone", None)
    last = kube.calls[-1]
    assert (last.method, last.path) == ("PATCH", f"{SCALESET_PATH}/status"), "nothing is sent after the 404"
