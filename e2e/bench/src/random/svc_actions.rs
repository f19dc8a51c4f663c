//! The run's own API calls on PrefixClaims and Services. Like
//! [`super::actions`], each retries while the control plane recovers; a
//! refusal (4xx) is an answer the caller counts, not an error.

use std::net::IpAddr;
use std::time::Instant;

use anyhow::{Result, anyhow};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use prefix_operator::api::{PrefixClaim, PrefixClaimSpec, Purpose};
use prefix_operator::controller::LOAD_BALANCER_CLASS;

use super::actions::{code, retry};
use super::history::History;
use super::mix_svc::SvcSpec;

/// The operator's annotation asking for LoadBalancer addresses.
pub const REQUESTED_IPS: &str = prefix_operator::k8s::services::REQUESTED_IPS_ANNOTATION;
pub const NS: &str = "default";

/// A bound claim as a fresh list shows it.
#[derive(Clone, Debug)]
pub struct Bound {
    pub name: String,
    pub purpose: Purpose,
    pub prefix: IpNet,
    pub pool: Option<String>,
    pub deleting: bool,
}

pub struct SvcActions {
    claims: Api<PrefixClaim>,
    services: Api<Service>,
    hist: History,
}

/// A Service of `spec`'s kind; `ip` is the address asked for (a
/// ClusterIP, or a LoadBalancer address through the annotation).
pub fn service(name: &str, spec: &SvcSpec, ip: Option<IpAddr>) -> Service {
    let lb_ask = spec.lb.then_some(ip).flatten();
    let cluster_ip = (!spec.lb).then_some(ip).flatten();
    let (families, policy) = match cluster_ip {
        // A ClusterIP asked for is one family's.
        Some(IpAddr::V4(_)) => (vec!["IPv4"], "SingleStack"),
        Some(IpAddr::V6(_)) => (vec!["IPv6"], "SingleStack"),
        None => (spec.families.clone(), spec.policy),
    };
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            annotations: lb_ask.map(|a| [(REQUESTED_IPS.to_string(), a.to_string())].into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(if spec.lb { "LoadBalancer" } else { "ClusterIP" }.into()),
            load_balancer_class: spec.lb.then(|| LOAD_BALANCER_CLASS.into()),
            allocate_load_balancer_node_ports: spec.lb.then_some(false),
            cluster_ip: cluster_ip.map(|a| a.to_string()),
            cluster_ips: cluster_ip.map(|a| vec![a.to_string()]),
            ip_families: Some(families.iter().map(|f| f.to_string()).collect()),
            ip_family_policy: Some(policy.into()),
            selector: Some([("app".to_string(), name.to_string())].into()),
            ports: Some(vec![ServicePort {
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

impl SvcActions {
    pub fn new(client: &Client, hist: &History) -> SvcActions {
        SvcActions {
            claims: Api::all(client.clone()),
            services: Api::namespaced(client.clone(), NS),
            hist: hist.clone(),
        }
    }

    /// Creates a claim; Ok(false) when the API server refuses it.
    pub async fn create_claim(&self, name: &str, spec: &PrefixClaimSpec) -> Result<bool> {
        let obj = PrefixClaim::new(name, spec.clone());
        let (mut tries, pp) = (0, PostParams::default());
        let r = retry(|| {
            tries += 1;
            self.claims.create(&pp, &obj)
        })
        .await;
        match r {
            Ok(c) => {
                self.hist.lock().observe_claim(&c, Instant::now());
                Ok(true)
            }
            Err(e) if code(&e) == Some(409) && tries > 1 => Ok(true),
            Err(e) if code(&e).is_some_and(|c| c < 500) => Ok(false),
            Err(e) => Err(anyhow!(e).context(format!("creating PrefixClaim {name}"))),
        }
    }

    /// Deletes a claim (the operator's finalizer may keep it a while).
    pub async fn delete_claim(&self, name: &str) -> Result<()> {
        let dp = DeleteParams::default();
        match retry(|| self.claims.delete(name, &dp)).await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(404) => Ok(()),
            Err(e) => Err(anyhow!(e).context(format!("deleting PrefixClaim {name}"))),
        }
    }

    /// Creates a Service; Err(reason) inside when the API server refuses
    /// it (an address taken or outside every range, say).
    pub async fn create_service(&self, svc: &Service) -> Result<Result<(), String>> {
        let name = svc.metadata.name.clone().unwrap_or_default();
        let (mut tries, pp) = (0, PostParams::default());
        let r = retry(|| {
            tries += 1;
            self.services.create(&pp, svc)
        })
        .await;
        match r {
            Ok(_) => Ok(Ok(())),
            Err(e) if code(&e) == Some(409) && tries > 1 => Ok(Ok(())),
            Err(kube::Error::Api(s)) if s.code < 500 => {
                Ok(Err(format!("{} {}", s.code, s.message)))
            }
            Err(e) => Err(anyhow!(e).context(format!("creating Service {name}"))),
        }
    }

    pub async fn delete_service(&self, name: &str) -> Result<()> {
        let dp = DeleteParams::default();
        match retry(|| self.services.delete(name, &dp)).await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(404) => Ok(()),
            Err(e) => Err(anyhow!(e).context(format!("deleting Service {name}"))),
        }
    }

    /// Every bound claim, by name.
    pub async fn bound(&self) -> Result<Vec<Bound>> {
        let lp = ListParams::default();
        let list = retry(|| self.claims.list(&lp)).await?;
        let mut out: Vec<Bound> = list
            .items
            .iter()
            .filter_map(|c| {
                let st = c.status.as_ref()?;
                Some(Bound {
                    name: c.metadata.name.clone()?,
                    purpose: c.spec.purpose,
                    prefix: st.prefix.as_deref()?.parse().ok()?,
                    pool: st.pool.clone(),
                    deleting: c.metadata.deletion_timestamp.is_some(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// The `n`-th usable address of `p` (never the network address nor an
/// IPv4 broadcast address).
pub fn nth_address(p: &IpNet, n: u128) -> Option<IpAddr> {
    let host_bits = u32::from(p.max_prefix_len() - p.prefix_len());
    let size = if host_bits >= 127 {
        u128::MAX
    } else {
        1u128 << host_bits
    };
    if size < 4 {
        return None;
    }
    let off = 1 + n % (size - 2);
    match p {
        IpNet::V6(v) => Some(IpAddr::V6((u128::from(v.network()) + off).into())),
        IpNet::V4(v) => {
            let off = u32::try_from(off).ok()?;
            Some(IpAddr::V4((u32::from(v.network()) + off).into()))
        }
    }
}
