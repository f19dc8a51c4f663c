//! The two ValidatingAdmissionPolicies as rendered: which values switch
//! them, what they match, and that the fence says what the operator looks
//! for in a refusal (`prefix_operator::k8s::errors::FENCE_MARKER`). What
//! the API server does with them: tests/fence.rs.

use prefix_operator::k8s::errors::FENCE_MARKER;
use serde_yaml::Value;

use super::support::helm::Helm;
use super::{docs_of, find};

fn policy_names(docs: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = find(docs, "ValidatingAdmissionPolicy")
        .into_iter()
        .chain(find(docs, "ValidatingAdmissionPolicyBinding"))
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or(""),
                d["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    names.sort();
    names
}

fn policy<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    find(docs, "ValidatingAdmissionPolicy")
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no policy {name}"))
}

#[test]
fn the_fence_is_bound_to_the_lease_and_says_what_the_operator_reads() {
    let helm = Helm::new();
    let docs = docs_of(&helm, &["--set", "leaderElection.leaseName=my-lease"]);
    assert_eq!(
        policy_names(&docs),
        [
            "ValidatingAdmissionPolicy/prefix-operator-fence",
            "ValidatingAdmissionPolicy/prefix-operator-least-authority",
            "ValidatingAdmissionPolicyBinding/prefix-operator-fence",
            "ValidatingAdmissionPolicyBinding/prefix-operator-least-authority",
        ]
    );
    let fence = policy(&docs, "prefix-operator-fence");
    assert_eq!(fence["spec"]["paramKind"]["kind"], "Lease");
    assert_eq!(fence["spec"]["failurePolicy"], "Fail");
    let condition = fence["spec"]["matchConditions"][0]["expression"]
        .as_str()
        .expect("condition");
    assert!(
        condition.contains("'system:serviceaccount:kube-system:prefix-operator'"),
        "{condition}"
    );
    let message = fence["spec"]["validations"][0]["message"]
        .as_str()
        .expect("a static message: a messageExpression is evaluated on every request");
    assert!(
        message.starts_with(FENCE_MARKER) && message.ends_with("kube-system/my-lease"),
        "{message}"
    );
    let binding = find(&docs, "ValidatingAdmissionPolicyBinding")
        .into_iter()
        .find(|d| d["metadata"]["name"] == "prefix-operator-fence")
        .expect("binding");
    assert_eq!(binding["spec"]["paramRef"]["name"], "my-lease");
    assert_eq!(binding["spec"]["paramRef"]["namespace"], "kube-system");
    assert_eq!(binding["spec"]["validationActions"][0], "Deny");
}

#[test]
fn values_switch_each_policy_and_the_class_is_the_operators() {
    let helm = Helm::new();
    let without_election = docs_of(
        &helm,
        &[
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "replicas=1",
        ],
    );
    assert_eq!(
        policy_names(&without_election),
        [
            "ValidatingAdmissionPolicy/prefix-operator-least-authority",
            "ValidatingAdmissionPolicyBinding/prefix-operator-least-authority",
        ],
        "no Lease, no fence"
    );
    let none = docs_of(
        &helm,
        &[
            "--set",
            "admissionPolicies.fence=false",
            "--set",
            "admissionPolicies.leastAuthority=false",
        ],
    );
    assert!(policy_names(&none).is_empty(), "{:?}", policy_names(&none));
    let classed = docs_of(
        &helm,
        &[
            "--set",
            "operator.loadBalancerClass=example.com/lb",
            "--set",
            "operator.serveClasslessLoadBalancers=true",
        ],
    );
    let text =
        serde_yaml::to_string(policy(&classed, "prefix-operator-least-authority")).expect("yaml");
    assert!(text.contains("== 'example.com/lb'"), "{text}");
    assert!(
        text.contains("!has(object.spec.loadBalancerClass)"),
        "{text}"
    );
    let default = docs_of(&helm, &[]);
    let text =
        serde_yaml::to_string(policy(&default, "prefix-operator-least-authority")).expect("yaml");
    assert!(
        !text.contains("!has(object.spec.loadBalancerClass)"),
        "classless Services are not the operator's by default"
    );
}
