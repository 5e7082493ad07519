"""kubesim's built-in controllers: the loops kube-controller-manager (and apiextensions-apiserver) run.

Each controller is a module of its own that reads and writes the store only through its public verbs
(see `kubesim.store.Controller` for how the store tells a controller of its writes). `start` gives a
store its controllers, as the cluster does when it starts (`kubesim.cluster.Cluster`):

- `crd_establishing`: serves a CRD's types and reports it Established.
- `serviceaccounts`: the `default` ServiceAccount of every new namespace.
- `root_ca`: the cluster's CA as the `kube-root-ca.crt` ConfigMap of every namespace.
- `garbage_collector`: background, orphan and foreground deletion of dependents (ownerReferences).
- `namespace_lifecycle`: empties a terminating namespace, then lets it go.
- `crd_finalizer`: deletes a deleted CRD's instances, then lets the CRD go.
- `pvc_protection`: lets a deleted claim go once no scheduled pod uses it.
- `disruption`: the status of every PodDisruptionBudget.
- `bootstrap`: the default namespaces and the `kubernetes` Service, written once the controllers run.
"""

from __future__ import annotations

from kubesim.controllers.bootstrap import bootstrap
from kubesim.controllers.crd_establishing import CrdEstablishing
from kubesim.controllers.crd_finalizer import CrdFinalizer
from kubesim.controllers.disruption import DisruptionController
from kubesim.controllers.garbage_collector import GarbageCollector
from kubesim.controllers.namespace_lifecycle import NamespaceLifecycle
from kubesim.controllers.pvc_protection import PvcProtection
from kubesim.controllers.root_ca import RootCaPublisher
from kubesim.controllers.serviceaccounts import ServiceAccounts
from kubesim.store import Controller, Store

# In the order the store tells them of a write (the order matters where one's work follows another's).
CONTROLLERS: tuple[type[Controller], ...] = (
    CrdEstablishing,
    ServiceAccounts,
    RootCaPublisher,
    GarbageCollector,
    NamespaceLifecycle,
    CrdFinalizer,
    PvcProtection,
    DisruptionController,
)


def start(store: Store) -> None:
    """Give the store the built-in controllers and the default objects; a store that has them already
    keeps them."""
    if store.controllers:
        return
    for controller in CONTROLLERS:
        store.add_controller(controller(store))
    bootstrap(store)
