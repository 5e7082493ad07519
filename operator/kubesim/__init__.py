"""kubesim: an embedded Kubernetes API server and kubelet simulator for tests and demos."""
