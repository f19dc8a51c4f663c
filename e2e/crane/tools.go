//go:build tools

// Package tools pins crane, which `make image` (e2e/image/build.sh) uses to
// assemble the operator's OCI image without a container engine.
package tools

import (
	_ "github.com/google/go-containerregistry/cmd/crane"
)
