//go:build tools

// Package tools pins the command this module builds: MetalLB's controller,
// which `make bench-lb` runs beside the operator.
package tools

import (
	_ "go.universe.tf/metallb/controller"
)
