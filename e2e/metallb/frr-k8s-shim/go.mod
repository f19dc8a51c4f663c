// The API package of frr-k8s as MetalLB v0.16.2 compiles against it. v0.16.2
// requires frr-k8s v0.0.27, which the Go module proxy refuses (403); build.sh
// fills api/v1beta1 with v0.0.26's files from the module cache and this
// directory adds what v0.0.27 added and only MetalLB's speaker uses (shim.go
// and one field of Advertise). The controller never reads either.
module github.com/metallb/frr-k8s

go 1.26.0

require (
	k8s.io/apimachinery v0.37.1
	sigs.k8s.io/controller-runtime v0.25.1
)
