//! What the chart renders: lint, the defaults a cluster component needs,
//! RBAC matching the operator's calls, the optional parts.

use super::*;

#[test]
fn helm_lint_is_clean() {
    let helm = Helm::new();
    for values in [
        vec![],
        vec![
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "replicas=1",
        ],
        vec![
            "--set",
            "hostNetwork=false",
            "--set",
            "http.bindAddress=0.0.0.0",
        ],
    ] {
        let out = helm
            .cmd()
            .args(["lint", "--strict", "--kube-version", "1.33.0"])
            .arg(chart_dir())
            .args(&values)
            .output()
            .expect("helm lint");
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "helm lint {values:?} failed:\n{all}");
        assert!(all.contains("0 chart(s) failed"), "{all}");
        assert!(
            !all.contains("[WARNING]") && !all.contains("[ERROR]"),
            "helm lint {values:?} is not clean:\n{all}"
        );
    }
}

/// The pinned helm is stamped with a default Kubernetes version (as helm's
/// release builds are), so the chart renders and lints as a new admin runs
/// them, without `--kube-version` (unstamped, helm assumes v1.20.0, older
/// than the chart's `kubeVersion`).
#[test]
fn helm_renders_and_lints_without_a_kube_version() {
    let helm = Helm::new();
    for args in [
        vec!["template", "prefix-operator"],
        vec!["lint", "--strict"],
    ] {
        let out = helm
            .cmd()
            .args(&args)
            .arg(chart_dir())
            .output()
            .expect("helm");
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "helm {args:?} failed:\n{all}");
    }
}

#[test]
fn default_render_has_what_a_cluster_component_needs() {
    let helm = Helm::new();
    let docs = docs(&ok("helm template", helm.template(&[])));
    kinds_in_the_release_namespace(&docs);
    let dep = one(&docs, "Deployment");
    deployment_runs_as_a_cluster_component(dep);
    tolerates_a_node_without_network(&dep["spec"]["template"]["spec"]);
    rbac_is_what_the_operator_calls(&docs);
    let svc = one(&docs, "Service");
    assert_eq!(svc["spec"]["ports"][0]["port"], 10263);
    assert_eq!(svc["spec"]["ports"][0]["name"], "https-metrics");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics");
    assert_eq!(
        svc["spec"]["selector"],
        dep["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        one(&docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        dep["spec"]["selector"]["matchLabels"]
    );
    optional_parts_render(&helm);
}

/// The kinds rendered by default, every namespaced one in the release
/// namespace.
fn kinds_in_the_release_namespace(docs: &[Value]) {
    let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    let want: BTreeSet<&str> = [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "CustomResourceDefinition",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    .into();
    assert_eq!(
        kinds, want,
        "kinds rendered by default (no ServiceMonitor; the CRDs with crds.enabled)"
    );
    for d in docs {
        let cluster_scoped = [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ];
        if !cluster_scoped.iter().any(|k| d["kind"] == *k) {
            assert_eq!(
                d["metadata"]["namespace"], "kube-system",
                "namespaced object outside the release namespace: {d:?}"
            );
        }
    }
}

/// Replicas, priority, host network, arguments, the downward API, probes,
/// security context and resources of the Deployment.
fn deployment_runs_as_a_cluster_component(dep: &Value) {
    let spec = &dep["spec"]["template"]["spec"];
    assert_eq!(dep["spec"]["replicas"], 2);
    assert_eq!(spec["serviceAccountName"], "prefix-operator");
    assert_eq!(spec["priorityClassName"], "system-cluster-critical");
    assert_eq!(
        spec["hostNetwork"], true,
        "the CNI waits for us: no pod network yet"
    );
    let c = &spec["containers"][0];
    let args = strs(&c["args"]);
    assert_eq!(args[0], "run");
    for a in [
        "--leader-elect=true",
        "--lease-namespace=kube-system",
        "--lease-name=prefix-operator",
        "--http-addr=[::]:10262",
        "--metrics-addr=[::]:10263",
    ] {
        assert!(args.iter().any(|x| x == a), "{a} missing from {args:?}");
    }
    let env = c["env"].as_sequence().expect("env");
    for (name, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let e = env
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(
            e["valueFrom"]["fieldRef"]["fieldPath"], path,
            "{name} from the downward API"
        );
    }
    assert_eq!(c["ports"][0]["containerPort"], 10262);
    assert_eq!(c["ports"][1]["name"], "metrics");
    assert_eq!(c["ports"][1]["containerPort"], 10263);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "http");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http");
    hardened(c, spec);
}

/// The container runs as non-root with nothing it does not need, and has
/// resources set.
fn hardened(c: &Value, spec: &Value) {
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    for k in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(
                c["resources"][k][r].as_str().is_some(),
                "resources.{k}.{r} missing"
            );
        }
    }
}

/// The pod schedules where no CNI runs yet: it tolerates the taints of a
/// new, uninitialized, network-less or control-plane Node.
fn tolerates_a_node_without_network(spec: &Value) {
    let tolerated: BTreeSet<(String, String)> = spec["tolerations"]
        .as_sequence()
        .expect("tolerations")
        .iter()
        .map(|t| {
            assert_eq!(t["operator"], "Exists", "{t:?}");
            (
                t["key"].as_str().unwrap_or_default().to_string(),
                t["effect"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for key in [
        "node-role.kubernetes.io/control-plane",
        "node.kubernetes.io/not-ready",
        "node.cloudprovider.kubernetes.io/uninitialized",
        "node.kubernetes.io/network-unavailable",
    ] {
        assert!(
            tolerated.contains(&(key.to_string(), "NoSchedule".to_string())),
            "no toleration of {key}:NoSchedule in {tolerated:?}"
        );
    }
}

/// The rules of a rendered ClusterRole or Role, as [`grants`] lists them.
fn rendered_grants(d: &Value) -> BTreeSet<(String, String, String, Vec<String>)> {
    let rules: Vec<PolicyRule> =
        serde_yaml::from_value(d["rules"].clone()).expect("rules are PolicyRules");
    grants(&rules)
}

/// RBAC: exactly what the operator calls (tests/rbac_e2e.rs shows each is
/// needed), bound to the chart's ServiceAccount.
fn rbac_is_what_the_operator_calls(docs: &[Value]) {
    let rule = |g: &str, r: &str, v: &str, names: &[&str]| {
        (
            g.to_string(),
            r.to_string(),
            v.to_string(),
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        rendered_grants(named(docs, "ClusterRole", "prefix-operator")),
        BTreeSet::from([
            rule("", "nodes", "get", &[]),
            rule("", "nodes", "list", &[]),
            rule("", "nodes", "watch", &[]),
            rule("", "services", "list", &[]),
            rule("", "services", "watch", &[]),
            rule("", "services/status", "patch", &[]),
            rule("ipam.prefix-operator.io", "prefixclaims", "list", &[]),
            rule("ipam.prefix-operator.io", "prefixclaims", "watch", &[]),
            rule("ipam.prefix-operator.io", "prefixclaims", "patch", &[]),
            rule(
                "ipam.prefix-operator.io",
                "prefixclaims/status",
                "patch",
                &[]
            ),
            rule("networking.k8s.io", "servicecidrs", "list", &[]),
            rule("networking.k8s.io", "servicecidrs", "watch", &[]),
            rule("networking.k8s.io", "servicecidrs", "create", &[]),
            rule("networking.k8s.io", "servicecidrs", "delete", &[]),
            rule("networking.k8s.io", "servicecidrs", "patch", &[]),
            rule("networking.k8s.io", "ipaddresses", "list", &[]),
            rule("networking.k8s.io", "ipaddresses", "watch", &[]),
            rule("", "nodes", "patch", &[]),
            rule("ipam.prefix-operator.io", "prefixpools", "list", &[]),
            rule("ipam.prefix-operator.io", "prefixpools", "watch", &[]),
            rule(
                "ipam.prefix-operator.io",
                "prefixpools/status",
                "patch",
                &[]
            ),
            rule("events.k8s.io", "events", "create", &[]),
            rule("events.k8s.io", "events", "patch", &[]),
        ])
    );
    assert_eq!(
        rendered_grants(one(docs, "Role")),
        BTreeSet::from([
            rule("coordination.k8s.io", "leases", "create", &[]),
            rule("coordination.k8s.io", "leases", "get", &["prefix-operator"]),
            rule(
                "coordination.k8s.io",
                "leases",
                "update",
                &["prefix-operator"]
            ),
        ])
    );
    metrics_rbac(docs);
    for (binding, name) in [
        ("ClusterRoleBinding", "prefix-operator"),
        ("ClusterRoleBinding", "prefix-operator-metrics-auth"),
        ("RoleBinding", "prefix-operator-leader-election"),
    ] {
        let b = named(docs, binding, name);
        assert_eq!(b["roleRef"]["name"], name);
        assert_eq!(b["subjects"][0]["kind"], "ServiceAccount");
        assert_eq!(b["subjects"][0]["name"], "prefix-operator");
        assert_eq!(b["subjects"][0]["namespace"], "kube-system");
    }
}

/// The object of `kind` named `name`.
fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = find(docs, kind)
        .into_iter()
        .filter(|d| d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "expected one {kind} {name}");
    found[0]
}

/// The HTTPS /metrics: the operator may create TokenReviews and
/// SubjectAccessReviews (what system:auth-delegator grants), and a reader
/// role grants get on /metrics alone.
fn metrics_rbac(docs: &[Value]) {
    let rule = |g: &str, r: &str| (g.to_string(), r.to_string(), "create".to_string(), vec![]);
    assert_eq!(
        rendered_grants(named(docs, "ClusterRole", "prefix-operator-metrics-auth")),
        BTreeSet::from([
            rule("authentication.k8s.io", "tokenreviews"),
            rule("authorization.k8s.io", "subjectaccessreviews"),
        ])
    );
    let reader = named(docs, "ClusterRole", "prefix-operator-metrics-reader");
    let rules: Vec<PolicyRule> =
        serde_yaml::from_value(reader["rules"].clone()).expect("rules are PolicyRules");
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(
        rules[0].non_resource_urls,
        Some(vec!["/metrics".to_string()])
    );
    assert_eq!(rules[0].verbs, ["get"]);
    assert!(rules[0].resources.is_none(), "{rules:?}");
}

/// DHCPv6-PD: off by default (the hardened non-root container); on, the
/// container runs as root with only NET_BIND_SERVICE, the pods are pinned
/// to the hosts on the delegating link, and the delegated pool rendered is
/// one the API's rules and the operator accept.
#[test]
fn dhcpv6_values_render() {
    let helm = Helm::new();
    let docs = docs_of(
        &helm,
        &[
            "--set",
            "dhcpv6.enabled=true",
            "--set-string",
            "dhcpv6.nodeSelector.site/wan=true",
            "--set",
            "dhcpv6.pool.create=true",
            "--set",
            "dhcpv6.pool.interface=eth1",
        ],
    );
    let spec = &one(&docs, "Deployment")["spec"]["template"]["spec"];
    let c = &spec["containers"][0]["securityContext"];
    assert_eq!(c["runAsUser"], 0);
    assert_eq!(strs(&c["capabilities"]["add"]), vec!["NET_BIND_SERVICE"]);
    assert_eq!(strs(&c["capabilities"]["drop"]), vec!["ALL"]);
    assert_eq!(c["allowPrivilegeEscalation"], false);
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["nodeSelector"]["site/wan"], "true");
    assert_eq!(spec["nodeSelector"]["kubernetes.io/os"], "linux");
    let pool = one(&docs, "PrefixPool");
    assert_eq!(pool["spec"]["delegation"]["interface"], "eth1");
    assert_eq!(pool["spec"]["delegation"]["prefixLength"], 56);
    let parsed: prefix_operator::api::PrefixPoolSpec =
        serde_json::from_value(serde_json::to_value(&pool["spec"]).expect("json"))
            .expect("a pool spec");
    let def = prefix_operator::api::validate_spec(&parsed).expect("valid");
    assert_eq!(def.delegation_interface.as_deref(), Some("eth1"));
    // Off: nothing of it.
    let off = docs_of(&helm, &[]);
    let c =
        &one(&off, "Deployment")["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(c["runAsNonRoot"], true);
    assert!(find(&off, "PrefixPool").is_empty());
    // A pool without the client, or without an interface, is refused.
    for (set, phrase) in [
        (
            vec!["dhcpv6.pool.create=true", "dhcpv6.pool.interface=eth1"],
            "dhcpv6.pool.create needs dhcpv6.enabled",
        ),
        (
            vec!["dhcpv6.enabled=true", "dhcpv6.pool.create=true"],
            "dhcpv6.pool.interface is required",
        ),
        (
            vec![
                "dhcpv6.enabled=true",
                "hostNetwork=false",
                "http.bindAddress=0.0.0.0",
            ],
            "dhcpv6.enabled needs hostNetwork",
        ),
        (
            vec!["dhcpv6.pool.interface=../eth1"],
            "'/dhcpv6/pool/interface'",
        ),
    ] {
        let mut args = Vec::new();
        for s in &set {
            args.extend(["--set", s]);
        }
        let out = helm.template(&args);
        assert!(!out.status.success(), "{set:?} was accepted");
        assert!(
            text(&out.stderr).contains(phrase),
            "{set:?}: {}",
            text(&out.stderr)
        );
    }
}

/// The HTTPS scrape (the ServiceMonitor's default `endpoint`), a CA for it,
/// a certificate Secret, and plain metrics.
fn metrics_values_render(helm: &Helm, endpoint: &Value) {
    assert_eq!(endpoint["scheme"], "https");
    assert_eq!(
        endpoint["bearerTokenFile"],
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    );
    assert_eq!(endpoint["tlsConfig"]["insecureSkipVerify"], true);
    let args = |d: &[Value]| {
        strs(&one(d, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"])
    };
    let with_ca = docs_of(
        helm,
        &[
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "serviceMonitor.tlsConfig.serverName=metrics.example",
            "--set",
            "http.metrics.certSecret=metrics-tls",
        ],
    );
    let tls = &one(&with_ca, "ServiceMonitor")["spec"]["endpoints"][0]["tlsConfig"];
    assert_eq!(tls["serverName"], "metrics.example");
    assert!(tls["insecureSkipVerify"].is_null(), "{tls:?}");
    let a = args(&with_ca);
    assert!(a.contains(&"--metrics-cert-file=/etc/prefix-operator/metrics-tls/tls.crt".into()));
    let pod = &one(&with_ca, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "metrics-tls");
    assert_eq!(
        pod["containers"][0]["volumeMounts"][0]["mountPath"],
        "/etc/prefix-operator/metrics-tls"
    );
    let plain = docs_of(
        helm,
        &[
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "http.metrics.secure=false",
        ],
    );
    assert!(args(&plain).contains(&"--metrics-secure=false".into()));
    let port = &one(&plain, "Service")["spec"]["ports"][0];
    assert_eq!(port["name"], "http-metrics");
    assert_eq!(port["port"], 10262);
    let ep = &one(&plain, "ServiceMonitor")["spec"]["endpoints"][0];
    assert!(
        ep["scheme"].is_null() && ep["bearerTokenFile"].is_null(),
        "{ep:?}"
    );
    assert!(
        !find(&plain, "ClusterRole")
            .iter()
            .any(|r| r["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.contains("metrics"))),
        "no metrics RBAC for plain metrics"
    );
}

/// The ServiceMonitor, the PDB, leader election and the HTTP address
/// follow their values.
fn optional_parts_render(helm: &Helm) {
    assert!(
        find(&docs_of(helm, &[]), "PrefixClaim").is_empty(),
        "no claim by default"
    );
    let claims = docs_of(
        helm,
        &[
            "--set-json",
            r#"prefixClaims=[{"name":"svc-gua","pool":"gua","prefixLength":112},{"name":"routers","poolSelector":{"matchLabels":{"a":"b"}},"prefixLength":64,"purpose":"Static"}]"#,
        ],
    );
    let rendered = find(&claims, "PrefixClaim");
    assert_eq!(rendered.len(), 2);
    assert_eq!(rendered[0]["spec"]["pool"], "gua");
    assert_eq!(rendered[0]["spec"]["purpose"], "ServiceCIDR");
    assert_eq!(rendered[0]["spec"]["ipFamily"], "IPv6");
    assert_eq!(rendered[1]["spec"]["poolSelector"]["matchLabels"]["a"], "b");
    assert_eq!(
        rendered[1]["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    // Each rendered claim is one the operator accepts.
    for c in &rendered {
        let spec: prefix_operator::api::PrefixClaimSpec =
            serde_json::from_value(serde_json::to_value(&c["spec"]).expect("json"))
                .expect("a claim spec");
        prefix_operator::api::validate_claim(&spec).expect("valid");
    }
    let with_sm = docs_of(
        helm,
        &[
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "serviceMonitor.labels.release=kps",
        ],
    );
    let sm = one(&with_sm, "ServiceMonitor");
    assert_eq!(sm["metadata"]["labels"]["release"], "kps");
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"],
        one(&with_sm, "Service")["spec"]["ports"][0]["name"]
    );
    metrics_values_render(helm, &sm["spec"]["endpoints"][0]);
    assert!(
        find(
            &docs_of(helm, &["--set", "replicas=1"]),
            "PodDisruptionBudget"
        )
        .is_empty(),
        "no PDB for one replica"
    );
    assert!(
        find(
            &docs_of(helm, &["--set", "podDisruptionBudget.enabled=false"]),
            "PodDisruptionBudget"
        )
        .is_empty()
    );
    let no_le = docs_of(
        helm,
        &[
            "--set",
            "replicas=1",
            "--set",
            "leaderElection.enabled=false",
        ],
    );
    assert!(
        find(&no_le, "Role").is_empty(),
        "no Lease Role without leader election"
    );
    assert!(
        strs(&one(&no_le, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"])
            .contains(&"--leader-elect=false".to_string())
    );
    let v4 = docs_of(
        helm,
        &[
            "--set",
            "http.bindAddress=0.0.0.0",
            "--set",
            "http.port=9090",
        ],
    );
    assert!(
        strs(&one(&v4, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"])
            .contains(&"--http-addr=0.0.0.0:9090".to_string())
    );
}
