"""kubesim serves HTTPS with a CA of its own in the kubeconfig, as a real API server does; plain HTTP by option."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request

import pytest
import yaml

from kubesim.cluster import ThreadedCluster
from kubesim.connection import connection_from_kubeconfig
from kubesim.testing import kubesim_only

pytestmark = kubesim_only("the TLS of kubesim's own server, started by each test")


def test_kubeconfig_names_https_and_the_cluster_ca() -> None:
    with ThreadedCluster(kubelet=False) as cluster:
        assert cluster.url.startswith("https://127.0.0.1:")
        config = yaml.safe_load(cluster.kubeconfig_path.read_text())
        assert config["clusters"][0]["cluster"]["certificate-authority-data"]
        connection = connection_from_kubeconfig(cluster.kubeconfig_path)
        with urllib.request.urlopen(
            cluster.url + "/version", context=connection.ssl_context, timeout=10
        ) as answer:
            assert answer.status == 200


def test_a_client_that_does_not_trust_the_ca_is_refused() -> None:
    with ThreadedCluster(kubelet=False) as cluster, pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(cluster.url + "/version", context=ssl.create_default_context(), timeout=10)
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)


def test_plain_http_by_option() -> None:
    with ThreadedCluster(kubelet=False, tls=False) as cluster:
        assert cluster.url.startswith("http://")
        assert cluster.ssl_context is None
        config = yaml.safe_load(cluster.kubeconfig_path.read_text())
        assert "certificate-authority-data" not in config["clusters"][0]["cluster"]
        with urllib.request.urlopen(cluster.url + "/version", timeout=10) as answer:
            assert answer.status == 200


def test_the_kubelet_reaches_the_https_server() -> None:
    with ThreadedCluster(nodes=2, time_scale=50.0) as cluster:
        nodes = [n["metadata"]["name"] for n in cluster.store.objects(cluster.store.type("nodes"))]
        assert sorted(nodes) == ["kubesim-node-0", "kubesim-node-1"]
