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

use super::reconciler::Reconciler;
use crate::k8s::claims as edge;
use crate::k8s::list_watch::Watched;

/// How long, by default, a draining claim's prefix must hold no ClusterIP
/// (on the watch) before its ServiceCIDR, and then the claim, let it go
/// (`--service-cidr-grace`).
pub const SERVICE_CIDR_GRACE: Duration = Duration::from_secs(10);

impl Reconciler {
    pub(super) fn on_address_event(&mut self, ev: Watched<IPAddress>) {
        let touched: Vec<IpAddr> = match ev {
            Watched::Failed(e) => {
                self.metrics.error("WatchIPAddresses");
                warn!("{e}");
                return;
            }
            Watched::Listed {
                items,
                resource_version,
            } => {
                let snaps: Vec<_> = items.iter().map(edge::decode_address).collect();
                self.ledger.replace_addresses(&snaps, resource_version);
                self.claims.addresses_synced = true;
                self.after_sync();
                for name in self.ledger.claim_names() {
                    self.claims.push(&name);
                }
                vec![]
            }
            Watched::Apply(a) => {
                let snap = edge::decode_address(&a);
                if !self.ledger.upsert_address(&snap) {
                    return;
                }
                snap.name.parse().into_iter().collect()
            }
            Watched::Delete(a) => {
                let snap = edge::decode_address(&a);
                if !self
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
        for name in self.ledger.claim_names() {
            let inside = self
                .ledger
                .claim_state(&name)
                .and_then(|s| s.prefix)
                .is_some_and(|p| touched.iter().any(|ip| p.contains(ip)));
            if inside {
                self.claims.push(&name);
            }
        }
        self.report_new_conflicts();
        self.status.mark();
    }

    /// Whether claim `name`'s prefix `p` has held no ClusterIP, on the
    /// watch, for the ServiceCIDR grace. While the grace runs the claim is
    /// looked at again when it ends.
    pub(super) fn drained(&mut self, name: &str, p: IpNet) -> bool {
        if !self.claims.addresses_synced || !self.ledger.cluster_ips_inside(&p).is_empty() {
            self.claims.quiet_since.remove(name);
            return false;
        }
        let now = Instant::now();
        let since = *self
            .claims
            .quiet_since
            .entry(name.to_string())
            .or_insert(now);
        let ends = since + self.settings.service_cidr_grace;
        if now >= ends {
            return true;
        }
        self.claims.lane.retry_at(name, ends);
        false
    }
}
