// Package v1beta1: the project's own addition to frr-k8s v0.0.26's API (see
// ../../go.mod). The rest of this package is copied in by e2e/metallb/build.sh.
package v1beta1

// AsPathPrependPrefixes is what frr-k8s v0.0.27 added and MetalLB's BGP
// speaker fills in; its controller, which the benchmark runs, never does.
type AsPathPrependPrefixes struct {
	AsPathPrepend uint8    `json:"asPathPrepend,omitempty"`
	Prefixes      []string `json:"prefixes,omitempty"`
}
