//! System tests: the operator with the other software a cluster runs —
//! network namespaces with the reference CNI plugins and kube-proxy, Kea,
//! FRR and BIRD, kube-controller-manager, kubelets with containerd, Helm,
//! the image (`cargo test --test system`; one case: `cargo test --test
//! system lab::`).

#[path = "chart.rs"]
mod chart;
#[path = "cni_e2e.rs"]
mod cni_e2e;
#[path = "devenv.rs"]
mod devenv;
#[path = "dhcpv6_pd.rs"]
mod dhcpv6_pd;
#[path = "image.rs"]
mod image;
#[path = "kcm_cases.rs"]
mod kcm_cases;
#[path = "kube_proxy_e2e.rs"]
mod kube_proxy_e2e;
#[path = "lab.rs"]
mod lab;
#[path = "route_parsers.rs"]
mod route_parsers;
#[path = "routes_netns.rs"]
mod routes_netns;
