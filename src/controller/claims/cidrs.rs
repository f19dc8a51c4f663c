//! ClusterIPs and the end of a ServiceCIDR: the IPAddress watch feeds the
//! picture (every live ClusterIP inside pool space is held, see
//! [`crate::ledger`]), and a claim's ServiceCIDR is let go only once its
//! prefix has held no ClusterIP for [`SERVICE_CIDR_GRACE`].
//!
//! kube-apiserver allocates ClusterIPs from the ServiceCIDRs its informer
//! shows, so it can hand out an address of one that is already gone
//! (kube-controller-manager's ServiceCIDR controller keeps its own
//! finalizer for 10 s after the last address for this reason; the operator
//! does not count on that controller running). A ServiceCIDR being deleted
//! is not allocated from once the informer shows the deletion; the grace
//! covers the informers of every API server catching up, and whatever
//! slips through anyway is held by the picture and reported as a conflict.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::IPAddress;
use tracing::warn;

use super::{ClaimLane, rv_of};
use crate::controller::core::Core;
use crate::k8s::claims as edge;
use crate::k8s::list_watch::Watched;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::ResourceExt;

/// How long, by default, a draining claim's prefix must hold no ClusterIP
/// (on the watch) before its ServiceCIDR, and then the claim, let it go
/// (`--service-cidr-grace`).
pub const SERVICE_CIDR_GRACE: Duration = Duration::from_secs(10);

impl ClaimLane {
    pub(crate) fn on_service_cidr_event(&mut self, core: &mut Core, ev: Watched<ServiceCIDR>) {
        let touched: Vec<String> = match ev {
            Watched::Failed(e) => {
                core.metrics.error("WatchServiceCIDRs");
                warn!("{e}");
                vec![]
            }
            Watched::Listed { items, .. } => {
                let mut names: Vec<String> = self.service_cidrs.keys().cloned().collect();
                self.service_cidrs = items.into_iter().map(|s| (s.name_any(), s)).collect();
                names.extend(self.service_cidrs.keys().cloned());
                core.synced.service_cidrs = true;
                core.after_sync();
                names
            }
            Watched::Apply(s) => {
                let name = s.name_any();
                let uid = s.metadata.uid.clone().unwrap_or_default();
                // A write's answer can come after the watch told of the
                // object's end: an object known gone, or one the answer
                // shows deleted with no finalizer left (the API server
                // removed it), is not taken back in; nor is a state older
                // than the one held.
                let ended = s.metadata.deletion_timestamp.is_some() && s.finalizers().is_empty();
                let older = self.service_cidrs.get(&name).is_some_and(|held| {
                    held.metadata.uid == s.metadata.uid && rv_of(held) >= rv_of(&s)
                });
                let dead = self.gone_cidrs.get(&name).is_some_and(|g| g.uid == uid);
                // (The answer to the write that takes the last finalizer
                // off carries the state it was made for: its
                // resourceVersion is not later than the one held.)
                if dead || (older && !ended) {
                    return;
                }
                if ended {
                    self.service_cidr_gone(&s);
                } else {
                    self.service_cidrs.insert(name.clone(), s);
                }
                vec![name]
            }
            Watched::Delete(s) => {
                self.service_cidr_gone(&s);
                vec![s.name_any()]
            }
        };
        for name in touched {
            if core.ledger.claim_state(&name).is_some() {
                self.push(&name);
            }
        }
    }

    pub(crate) fn on_address_event(&mut self, core: &mut Core, ev: Watched<IPAddress>) {
        let touched: Vec<IpAddr> = match ev {
            Watched::Failed(e) => {
                core.metrics.error("WatchIPAddresses");
                warn!("{e}");
                return;
            }
            Watched::Listed {
                items,
                resource_version,
            } => {
                let snaps: Vec<_> = items.iter().map(edge::decode_address).collect();
                core.ledger.replace_addresses(&snaps, resource_version);
                core.synced.addresses = true;
                core.after_sync();
                for name in core.ledger.claim_names() {
                    self.push(&name);
                }
                vec![]
            }
            Watched::Apply(a) => {
                let snap = edge::decode_address(&a);
                if !core.ledger.upsert_address(&snap) {
                    return;
                }
                snap.name.parse().into_iter().collect()
            }
            Watched::Delete(a) => {
                let snap = edge::decode_address(&a);
                if !core
                    .ledger
                    .remove_address(&snap.name, &snap.uid, snap.resource_version)
                {
                    return;
                }
                snap.name.parse().into_iter().collect()
            }
        };
        // Claims whose prefix holds the address: a drain may end or start
        // again.
        for name in core.ledger.claim_names() {
            let inside = core
                .ledger
                .claim_state(&name)
                .and_then(|s| s.prefix)
                .is_some_and(|p| touched.iter().any(|ip| p.contains(ip)));
            if inside {
                self.push(&name);
            }
        }
        core.report_new_conflicts();
        core.status.mark();
    }

    /// Whether claim `name`'s prefix `p` has held no ClusterIP, on the
    /// watch, for the ServiceCIDR grace. While the grace runs the claim is
    /// looked at again when it ends.
    pub(super) fn drained(&mut self, core: &mut Core, name: &str, p: IpNet) -> bool {
        if !core.synced.addresses || !core.ledger.cluster_ips_inside(&p).is_empty() {
            self.quiet_since.remove(name);
            return false;
        }
        let now = Instant::now();
        let since = *self.quiet_since.entry(name.to_string()).or_insert(now);
        let ends = since + core.settings.service_cidr_grace;
        if now >= ends {
            return true;
        }
        self.lane.retry_at(name, ends);
        false
    }
}
