# prefix-operator — development entry points.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
DEV ?= .dev
# dev-up: the lab cluster where it can run (auto), or only etcd + kube-apiserver (no).
DEV_LAB ?= auto
# How dev-up gets target/debug/controlplane and target/debug/lab-cluster;
# tests that already built them pass ":".
CONTROLPLANE_BUILD ?= $(CARGO) build -p prefix-operator-testenv --bin controlplane -p prefix-operator-testsupport --bin lab-cluster --locked

.PHONY: test controlplane demo dev-up dev-down crd manifests lint bench bench-kcm bench-lb lab-bench chaos randomized clean-dev check-leftovers

## Build (or reuse) the control-plane binaries: kube-apiserver, etcd, kubectl, helm.
controlplane:
	@e2e/controlplane/build.sh >/dev/null

## Unit, property and integration tests against a real kube-apiserver + etcd
## (and promtool, FRR's vtysh, BIRD and iptables, the reference CNI plugins
## and cnitool, crane for the image test, kube-controller-manager for its
## service-cidr and EndpointSlice controllers and kube-proxy, kube-scheduler,
## kubelet, containerd and runc for the lab cluster, fetched or built and
## cached first; the operator's image, which the lab installs with Helm).
## Fails if the run left an etcd or kube-apiserver running (only the ones it
## started: see e2e/scoped.sh).
test: controlplane
	@e2e/crane/build.sh >/dev/null
	@e2e/promtool/build.sh >/dev/null
	@e2e/debs/fetch.sh >/dev/null
	@e2e/cni/build.sh >/dev/null
	@e2e/kcm/build.sh >/dev/null
	@e2e/node/build.sh >/dev/null
	$(MAKE) --no-print-directory image IMAGE_ARCHES=amd64
	$(CARGO) build --workspace --all-targets --locked
	NODE_COMPONENTS="$$(e2e/node/build.sh)" KCM_BIN="$$(e2e/kcm/build.sh)" CONTROLPLANE_BIN="$$(e2e/controlplane/build.sh)" e2e/scoped.sh $(CARGO) test --workspace --locked

## Fails if any etcd or kube-apiserver from the cache is running, whoever
## started it (make dev-up's too).
check-leftovers:
	@bin="$$(e2e/controlplane/build.sh)"; \
	if pgrep -f "$$bin/(etcd|kube-apiserver)" >/dev/null; then \
	  echo "leftover control-plane processes:"; pgrep -af "$$bin/(etcd|kube-apiserver)"; exit 1; \
	else echo "no control-plane process left running"; fi

## A cluster in the background, kubeconfig in .dev/kubeconfig: where it can
## (root, network namespaces, cgroups) the lab cluster of tests/lab.rs —
## control plane, kube-controller-manager, kube-scheduler, two Nodes each
## with containerd, kubelet and kube-proxy, the operator's image imported if
## target/image has it — otherwise (or DEV_LAB=no) etcd and kube-apiserver
## only. kubectl, helm and ctr (on the Nodes) in .dev/. See e2e/dev-up.sh.
dev-up: controlplane
	$(CONTROLPLANE_BUILD)
	@DEV=$(DEV) DEV_LAB=$(DEV_LAB) e2e/dev-up.sh

## Stop what dev-up started (processes, network namespaces, mounts, cgroups)
## and remove .dev.
dev-down:
	@DEV=$(DEV) e2e/dev-down.sh

## The operator's whole job on a local control plane.
demo:
	@e2e/demo.sh

## Regenerate the CRDs from the Rust types: crds/ and the chart's
## templates/crds/ (rendered when crds.enabled; tests fail when either is stale).
crd:
	$(CARGO) run -q --bin prefix-operator -- crd prefixpools > crds/prefixpools.ipam.prefix-operator.io.yaml
	$(CARGO) run -q --bin prefix-operator -- crd prefixclaims > crds/prefixclaims.ipam.prefix-operator.io.yaml
	mkdir -p charts/prefix-operator/templates/crds
	$(CARGO) run -q --bin prefix-operator -- crd --chart prefixpools > charts/prefix-operator/templates/crds/prefixpools.ipam.prefix-operator.io.yaml
	$(CARGO) run -q --bin prefix-operator -- crd --chart prefixclaims > charts/prefix-operator/templates/crds/prefixclaims.ipam.prefix-operator.io.yaml

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## Render deploy/prefix-operator.yaml from the chart (without its CRDs;
## tests/chart.rs fails when it is stale).
manifests:
	e2e/render-manifests.sh

.PHONY: static-build
MUSL_TARGET := x86_64-unknown-linux-musl
STATIC_BIN := target/$(MUSL_TARGET)/release/prefix-operator

## The static (musl) binary the Dockerfile builds, without a container engine.
## ring compiles C, so a musl C compiler (musl-gcc, Debian's musl-tools) is needed.
static-build:
	rustup target add $(MUSL_TARGET)
	@command -v musl-gcc >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq musl-tools; \
	  else echo "musl-gcc not found: install musl-tools (Debian/Ubuntu) or musl-gcc"; exit 1; fi; }
	CC_x86_64_unknown_linux_musl=musl-gcc $(CARGO) build --release --locked --target $(MUSL_TARGET) --bin prefix-operator
	file $(STATIC_BIN)
	@file $(STATIC_BIN) | grep -Eq 'statically linked|static-pie linked' || { echo "$(STATIC_BIN) is not static"; exit 1; }
	@out="$$(ldd $(STATIC_BIN) 2>&1 || true)"; echo "ldd: $$out"; \
	  echo "$$out" | grep -Eq 'not a dynamic executable|statically linked' || { echo "$(STATIC_BIN) has dynamic dependencies"; exit 1; }
	$(STATIC_BIN) --version

.PHONY: image static-build-arm64
ARM64_TARGET := aarch64-unknown-linux-musl
ARM64_BIN := target/$(ARM64_TARGET)/release/prefix-operator
IMAGE_OUT ?= target/image
# `make image IMAGE_ARCHES=amd64` skips the arm64 cross build.
IMAGE_ARCHES ?= amd64 arm64

## The operator's OCI image without a container engine: the static binaries
## on an empty base with what the Dockerfile's final stage sets (tests/image.rs
## keeps the two in step), assembled by crane (e2e/crane/build.sh) into
## $(IMAGE_OUT)/prefix-operator-VERSION-ARCH.oci.tar and, for both
## architectures, the multi-arch prefix-operator-VERSION.oci.tar
## (`ctr -n k8s.io images import FILE`; named as the chart's default image).
image:
	@e2e/crane/build.sh >/dev/null
	$(MAKE) --no-print-directory static-build
	$(if $(filter arm64,$(IMAGE_ARCHES)),$(MAKE) --no-print-directory static-build-arm64)
	e2e/image/build.sh --bin amd64=$(STATIC_BIN) $(if $(filter arm64,$(IMAGE_ARCHES)),--bin arm64=$(ARM64_BIN)) --out $(IMAGE_OUT)
	@ls -l $(IMAGE_OUT)

## The aarch64 musl binary, cross-built with cargo-zigbuild and Zig (both from
## PyPI, e2e/zig/build.sh): Zig is the C cross compiler ring needs.
static-build-arm64:
	rustup target add $(ARM64_TARGET)
	PATH="$$(e2e/zig/build.sh):$$PATH" $(CARGO) zigbuild --release --locked --target $(ARM64_TARGET) --bin prefix-operator
	file $(ARM64_BIN)
	@file $(ARM64_BIN) | grep -q 'ARM aarch64' || { echo "$(ARM64_BIN) is not an aarch64 binary"; exit 1; }
	@file $(ARM64_BIN) | grep -Eq 'statically linked|static-pie linked' || { echo "$(ARM64_BIN) is not static"; exit 1; }

## Scale benchmark against a local control plane: `make bench` (5000 Nodes) or
## `make bench N=20000`; extra flags in BENCH_ARGS. Then the operator beside
## kube-controller-manager's node IPAM (bench-kcm). Figures in target/bench/.
bench: controlplane
	$(CARGO) build --release --locked --bin prefix-operator
	CONTROLPLANE_BIN="$$(e2e/controlplane/build.sh)" e2e/scoped.sh $(CARGO) run --release --locked -p prefix-operator-bench --bin scale-bench -- --nodes $(or $(N),5000) $(BENCH_ARGS)
	@! pgrep -af '[-]-identity pob-' || { echo "leftover operator processes (above)"; exit 1; }
	$(MAKE) bench-kcm
	$(MAKE) bench-lb

## LoadBalancer Services: the operator and MetalLB's controller v0.16.2
## (built from Go modules by e2e/metallb/build.sh, cached) given the same
## backlogs (N Services before the allocator starts) and trickle, IPv4, IPv6
## and dual-stack, interleaved rounds, ratios within a round; the bare-client
## limit of status writes once per family. Figures in target/bench/lb.{md,json}:
## `make bench-lb LB_ARGS="--services 1000,3000 --rounds 3 --families ipv4,ipv6,dual"`.
bench-lb: controlplane
	$(CARGO) build --release --locked --bin prefix-operator
	METALLB_BIN="$$(e2e/metallb/build.sh)" CONTROLPLANE_BIN="$$(e2e/controlplane/build.sh)" e2e/scoped.sh $(CARGO) run --release --locked -p prefix-operator-bench --bin lb-bench -- $(LB_ARGS)
	@! pgrep -af '[-]-identity pob-' || { echo "leftover operator processes (above)"; exit 1; }

## The operator and kube-controller-manager v1.36.3 (built from Go modules,
## cached) given the same backlogs and trickle, interleaved rounds, ratios
## within a round: `make bench-kcm KCM_ARGS="--nodes 2000,5000 --rounds 3 --hog-duty 0.5"`.
bench-kcm: controlplane
	$(CARGO) build --release --locked --bin prefix-operator
	KCM_BIN="$$(e2e/kcm/build.sh)" CONTROLPLANE_BIN="$$(e2e/controlplane/build.sh)" e2e/scoped.sh $(CARGO) run --release --locked -p prefix-operator-bench --bin kcm-bench -- $(KCM_ARGS)
	@! pgrep -af '[-]-identity pob-' || { echo "leftover operator processes (above)"; exit 1; }

## Registration latency on the lab cluster (kubelet Nodes, the operator as a
## Helm-installed pod): registration -> podCIDRs and -> Ready, p50/p99, then
## the same with kube-controller-manager's range allocator in its place.
## LAB_BENCH_REGISTRATIONS=N (default 20). Report in target/lab-bench/report.txt.
lab-bench: controlplane
	@e2e/debs/fetch.sh >/dev/null
	@e2e/cni/build.sh >/dev/null
	@e2e/kcm/build.sh >/dev/null
	@e2e/node/build.sh >/dev/null
	$(MAKE) --no-print-directory image IMAGE_ARCHES=amd64
	NODE_COMPONENTS="$$(e2e/node/build.sh)" KCM_BIN="$$(e2e/kcm/build.sh)" CONTROLPLANE_BIN="$$(e2e/controlplane/build.sh)" e2e/scoped.sh $(CARGO) test --locked --test lab_bench -- --ignored --nocapture

## Long fault runs (SIGKILLs, kube-apiserver and etcd restarts, leader failover,
## all mid-burst); extra flags in CHAOS_ARGS, e.g. CHAOS_ARGS="--scenarios sigkill --kills 40".
chaos: controlplane
	$(CARGO) build --release --locked --bin prefix-operator
	CONTROLPLANE_BIN="$$(e2e/controlplane/build.sh)" e2e/scoped.sh $(CARGO) run --release --locked -p prefix-operator-bench --bin chaos -- $(CHAOS_ARGS)
	@! pgrep -af '[-]-identity pob-' || { echo "leftover operator processes (above)"; exit 1; }

## Randomized fault run (issues 10 and 30): the directed scenarios and a random
## mix of Node, pool (delete, re-create), PrefixClaim (every purpose, both
## families), LoadBalancer and ClusterIP Service and fault operations on a
## dual-stack Service range, invariants checked against the API server.
## `make randomized SEEDS=1,2,3 RANDOM_ARGS="--scenario random --ops 100"`;
## another operator build: RANDOM_ARGS="--operator-bin PATH"; directed scenarios with
## the first N seeds too: RANDOM_ARGS="--directed-seeds N"; do not stop at the first
## finding: RANDOM_ARGS="--keep-going". Logs and report.txt in target/randomized/.
randomized: controlplane
	$(CARGO) build --release --locked --bin prefix-operator
	CONTROLPLANE_BIN="$$(e2e/controlplane/build.sh)" e2e/scoped.sh $(CARGO) run --release --locked -p prefix-operator-bench --bin randomized -- --seeds $(or $(SEEDS),1,2,3) $(RANDOM_ARGS)
	@! pgrep -af '[-]-identity pob-' || { echo "leftover operator processes (above)"; exit 1; }
