//go:build tools

// Package tools pins the helm command this repository's chart tests run (make helm builds it).
package tools

import _ "helm.sh/helm/v4/cmd/helm"
