// The lab's pod sandbox program: what registry.k8s.io/pause does, built here
// because no registry is reachable. No dependencies.
module prefix-operator.local/node/pause

go 1.26.0
