//! `--http2`: the operator's client offers HTTP/2 by ALPN, and against the
//! real kube-apiserver every request shares one connection, where the
//! HTTP/1.1 client opens one per request in flight.

use prefix_operator_testsupport as support;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use prefix_operator::k8s::client::{build_client, build_http2_client};
use prefix_operator_testenv::{Identity, established_connections};
use support::*;

async fn config(cp: &prefix_operator_testenv::ControlPlane) -> kube::Config {
    let yaml = cp.kubeconfig_yaml(&Identity::Admin).expect("kubeconfig");
    let kc = kube::config::Kubeconfig::from_yaml(&yaml).expect("parse");
    kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config")
}

/// Connections this process holds to the API server after `client` ran 16
/// lists at once (and while it is still alive), minus those before.
async fn connections_for(client: kube::Client, port: u16) -> usize {
    let before = established_connections(std::process::id(), port);
    let nodes: Api<Node> = Api::all(client.clone());
    let lp = kube::api::ListParams::default();
    let lists = join_all((0..16).map(|_| nodes.list(&lp))).await;
    for l in lists {
        assert_eq!(l.expect("list Nodes").items.len(), 3);
    }
    let after = established_connections(std::process::id(), port);
    drop(client);
    after.saturating_sub(before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_multiplexes_on_one_connection() {
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    for n in ["a", "b", "c"] {
        create_node(&client, n, labels(&[]), &[]).await;
    }
    let port = cp.api_port();
    let h2 = connections_for(
        build_http2_client(config(&cp).await, 0).expect("client"),
        port,
    )
    .await;
    let h1 = connections_for(build_client(config(&cp).await, 0).expect("client"), port).await;
    assert_eq!(h2, 1, "HTTP/2: one connection for 16 requests in flight");
    assert!(
        h1 > 1,
        "HTTP/1.1 opens one per request in flight (the check can tell): {h1}"
    );

    // The operator on an HTTP/2 client does its job.
    create_pool(&client, "p", pool_spec(&["2001:db8:42::/48"])).await;
    let h2 = build_http2_client(config(&cp).await, 0).expect("client");
    let op = Operator::default(&h2).await;
    let nodes = wait_allocated(&client, None, None, std::time::Duration::from_secs(30)).await;
    assert_disjoint(&nodes);
    op.stop().await;
}
