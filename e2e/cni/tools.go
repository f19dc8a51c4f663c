//go:build tools

// Package tools pins the reference CNI plugins and cnitool that the CNI
// end-to-end test (tests/cni_e2e.rs) builds and runs.
package tools

import (
	_ "github.com/containernetworking/cni/cnitool"
	_ "github.com/containernetworking/plugins/plugins/ipam/host-local"
	_ "github.com/containernetworking/plugins/plugins/main/bridge"
	_ "github.com/containernetworking/plugins/plugins/main/loopback"
)
