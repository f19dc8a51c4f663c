//! RBAC rules as the tests read them: what a set of rules grants, each verb
//! of each rule taken away in turn, and what the API server's authorizer
//! answers for a ServiceAccount.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use kube::api::PostParams;
use kube::{Api, Client};

use super::wait_for;

/// Every (API group, resource, verb, resourceNames) that `rules` grant.
pub fn grants(rules: &[PolicyRule]) -> BTreeSet<(String, String, String, Vec<String>)> {
    let mut out = BTreeSet::new();
    for r in rules {
        let names = r.resource_names.clone().unwrap_or_default();
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for v in &r.verbs {
                    out.insert((g.clone(), res.clone(), v.clone(), names.clone()));
                }
            }
        }
    }
    out
}

/// Which role a rule lives in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Owner {
    ClusterRole,
    Role,
}

/// One verb of one resource of one rule.
#[derive(Clone, Debug)]
pub struct Case {
    pub owner: Owner,
    pub rule: usize,
    pub group: String,
    pub resource: String,
    pub verb: String,
    pub name: Option<String>,
}

impl Case {
    pub fn label(&self) -> String {
        let g = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        format!("{:?} {g} {} {}", self.owner, self.resource, self.verb)
    }
}

/// Every verb of every resource of `rules`, one case each.
pub fn cases(owner: Owner, rules: &[PolicyRule]) -> Vec<Case> {
    let mut out = vec![];
    for (i, r) in rules.iter().enumerate() {
        assert!(
            r.non_resource_urls.is_none(),
            "unexpected non-resource rule {r:?}"
        );
        let groups = r.api_groups.clone().unwrap_or_default();
        assert_eq!(groups.len(), 1, "one API group per rule: {r:?}");
        for res in r.resources.clone().unwrap_or_default() {
            for v in &r.verbs {
                out.push(Case {
                    owner,
                    rule: i,
                    group: groups[0].clone(),
                    resource: res.clone(),
                    verb: v.clone(),
                    name: r.resource_names.as_ref().and_then(|n| n.first().cloned()),
                });
            }
        }
    }
    out
}

/// `rules` with just `case`'s verb of its resource taken away.
pub fn without(rules: &[PolicyRule], case: &Case) -> Vec<PolicyRule> {
    let mut out = rules.to_vec();
    let rule = out.remove(case.rule);
    let others: Vec<String> = rule
        .resources
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| *r != case.resource)
        .collect();
    if !others.is_empty() {
        out.push(PolicyRule {
            resources: Some(others),
            ..rule.clone()
        });
    }
    let verbs: Vec<String> = rule
        .verbs
        .iter()
        .filter(|v| **v != case.verb)
        .cloned()
        .collect();
    if !verbs.is_empty() {
        out.push(PolicyRule {
            resources: Some(vec![case.resource.clone()]),
            verbs,
            ..rule
        });
    }
    out
}

/// A ServiceAccount, as the authorizer sees its requests.
#[derive(Clone, Debug)]
pub struct Subject {
    pub namespace: String,
    pub name: String,
}

impl Subject {
    pub fn user(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

/// Whether `sa` may do `verb` on `resource` (as `res/sub`), asked of the
/// same authorizer the operator's requests meet.
pub async fn allowed(
    client: &Client,
    sa: &Subject,
    case: &Case,
    namespace: Option<&str>,
    name: Option<&str>,
) -> bool {
    let (res, sub) = match case.resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (case.resource.as_str(), None),
    };
    let sar = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(sa.user()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{}", sa.namespace),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                group: Some(case.group.clone()),
                resource: Some(res.into()),
                subresource: sub,
                verb: Some(case.verb.clone()),
                namespace: namespace.map(Into::into),
                name: name.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let r = api
        .create(&PostParams::default(), &sar)
        .await
        .expect("SubjectAccessReview");
    r.status.is_some_and(|s| s.allowed)
}

/// A release's ClusterRole (`RELEASE`) and Lease Role
/// (`RELEASE-leader-election` in the release namespace), as installed.
pub struct Rbac {
    pub client: Client,
    pub sa: Subject,
    pub release: String,
    pub cluster_rules: Vec<PolicyRule>,
    pub role_rules: Vec<PolicyRule>,
}

impl Rbac {
    /// Reads both roles of `release`, whose ServiceAccount is `sa`.
    pub async fn load(client: &Client, release: &str, sa: Subject) -> Rbac {
        let crs: Api<ClusterRole> = Api::all(client.clone());
        let roles: Api<Role> = Api::namespaced(client.clone(), &sa.namespace);
        Rbac {
            client: client.clone(),
            cluster_rules: crs
                .get(release)
                .await
                .expect("ClusterRole")
                .rules
                .unwrap_or_default(),
            role_rules: roles
                .get(&format!("{release}-leader-election"))
                .await
                .expect("Role")
                .rules
                .unwrap_or_default(),
            release: release.to_string(),
            sa,
        }
    }

    /// Every verb of both roles, one case each.
    pub fn cases(&self) -> Vec<Case> {
        cases(Owner::ClusterRole, &self.cluster_rules)
            .into_iter()
            .chain(cases(Owner::Role, &self.role_rules))
            .collect()
    }

    /// Replaces the rules of `owner`'s role.
    pub async fn set(&self, owner: Owner, rules: Vec<PolicyRule>) {
        let release = &self.release;
        match owner {
            Owner::ClusterRole => {
                let api: Api<ClusterRole> = Api::all(self.client.clone());
                let mut cr = api.get(release).await.expect("ClusterRole");
                cr.rules = Some(rules);
                api.replace(release, &PostParams::default(), &cr)
                    .await
                    .expect("replace ClusterRole");
            }
            Owner::Role => {
                let api: Api<Role> = Api::namespaced(self.client.clone(), &self.sa.namespace);
                let name = format!("{release}-leader-election");
                let mut r = api.get(&name).await.expect("Role");
                r.rules = Some(rules);
                api.replace(&name, &PostParams::default(), &r)
                    .await
                    .expect("replace Role");
            }
        }
    }

    /// The rules of `owner`'s role as installed.
    pub fn rules(&self, owner: Owner) -> &[PolicyRule] {
        match owner {
            Owner::ClusterRole => &self.cluster_rules,
            Owner::Role => &self.role_rules,
        }
    }

    /// Waits until the authorizer gives the answer `want` for `case`.
    pub async fn wait_authz(&self, case: &Case, want: bool) {
        let ns = match (case.owner, case.resource.as_str()) {
            (Owner::Role, _) => Some(self.sa.namespace.as_str()),
            (_, "events") => Some("default"),
            _ => None,
        };
        wait_for(
            &format!("{} allowed == {want}", case.label()),
            Duration::from_secs(30),
            || async {
                (allowed(&self.client, &self.sa, case, ns, case.name.as_deref()).await == want)
                    .then_some(())
            },
        )
        .await;
    }
}
