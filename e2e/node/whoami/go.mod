// The lab's web server for pods: answers each HTTP request with the pod's
// name and the client address it saw. Built here because no registry is
// reachable. No dependencies.
module prefix-operator.local/node/whoami

go 1.26.0
