//! Overlay network addresses, allocated by the plan in the write that places a task, as the
//! ingress addresses are (`addresses.rs`), but cluster wide: an overlay network is one subnet
//! for every node, so its addresses are not cut into node slices.
//!
//! For each network of the task's spec (in the spec's order), the task gets the lowest free
//! address of the network's subnet. Never given: the subnet's network address, its gateway
//! (every node's bridge for the network holds it), its broadcast address, a VIP of any service
//! on the network (the control API gives VIPs highest first, so the two ends meet only when
//! the network is nearly full), and an address a live task holds there. "Live" is the ingress
//! rule ([`holds_no_address`]): an ended task frees its addresses, an orphaned one keeps them
//! while the store keeps it (it may still run on its cut-off node).
//!
//! A task's attachment names the network by name (`NetworkAttachment::network`), as the
//! runtime and `service ps` show it; names are unique in the store (the control API refuses a
//! second one). An attachment whose address is not inside the named network's subnet (a
//! network removed and made again with the same name) holds nothing.
//!
//! A task is attached to all its networks or to none: when one of them is missing from the
//! store or full, the addresses taken for the others are given back and the caller leaves the
//! task pending with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::addresses::holds_no_address;
use crate::model::{Network, NetworkAttachment, NetworkId, NetworkRef, Service, Task};

/// Why a task could not be attached to its overlay networks.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum NoOverlay {
    Missing {
        network: NetworkId,
    },
    Full {
        name: String,
        subnet: Ipv4Addr,
        prefix: u8,
    },
}

impl std::fmt::Display for NoOverlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoOverlay::Missing { network } => write!(f, "network {network} not found"),
            NoOverlay::Full {
                name,
                subnet,
                prefix,
            } => write!(
                f,
                "no free address on network {name} (its subnet {subnet}/{prefix} is full)"
            ),
        }
    }
}

/// The addresses held on each overlay network.
#[derive(Debug)]
pub struct OverlayAllocator<'a> {
    networks: BTreeMap<NetworkId, &'a Network>,
    /// Network → the addresses VIPs and live tasks hold on it.
    held: BTreeMap<NetworkId, BTreeSet<u32>>,
}

impl<'a> OverlayAllocator<'a> {
    /// Learns what is held from every service's VIPs and every task of the store (as the pass
    /// leaves them).
    pub fn new<'t>(
        networks: &'a [Network],
        services: impl IntoIterator<Item = &'t Service>,
        tasks: impl IntoIterator<Item = &'t Task>,
    ) -> Self {
        let by_id: BTreeMap<NetworkId, &Network> = networks.iter().map(|n| (n.id, n)).collect();
        let by_name: BTreeMap<&str, &Network> =
            networks.iter().map(|n| (n.name.as_str(), n)).collect();
        let mut held: BTreeMap<NetworkId, BTreeSet<u32>> =
            networks.iter().map(|n| (n.id, BTreeSet::new())).collect();
        for s in services {
            for vip in &s.vips {
                if let (Some(n), Some(set)) = (by_id.get(&vip.network), held.get_mut(&vip.network))
                    && n.contains(vip.addr)
                {
                    set.insert(u32::from(vip.addr));
                }
            }
        }
        for t in tasks {
            if holds_no_address(t) {
                continue;
            }
            for att in &t.networks {
                if let Some(n) = by_name.get(att.network.as_str())
                    && n.contains(att.addr)
                {
                    held.entry(n.id).or_default().insert(u32::from(att.addr));
                }
            }
        }
        OverlayAllocator {
            networks: by_id,
            held,
        }
    }

    /// The network of `id`, if the store has it.
    pub fn network(&self, id: NetworkId) -> Option<&'a Network> {
        self.networks.get(&id).copied()
    }

    /// One attachment per network of `refs`, in their order, or none at all with the reason.
    pub fn attach(&mut self, refs: &[NetworkRef]) -> Result<Vec<NetworkAttachment>, NoOverlay> {
        let mut out: Vec<NetworkAttachment> = Vec::with_capacity(refs.len());
        for r in refs {
            match self.allocate(r.network) {
                Ok(att) => out.push(att),
                Err(e) => {
                    self.release_all(refs, &out);
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// The lowest free address of `network`.
    fn allocate(&mut self, network: NetworkId) -> Result<NetworkAttachment, NoOverlay> {
        let n = self
            .network(network)
            .ok_or(NoOverlay::Missing { network })?;
        let held = self.held.entry(network).or_default();
        let (first, last) = (
            u32::from(n.subnet).saturating_add(1),
            u32::from(n.broadcast()).saturating_sub(1),
        );
        let gateway = u32::from(n.gateway);
        // At most |held| + 1 steps: each one passes a held address or the gateway.
        let mut candidate = first;
        while candidate <= last && (candidate == gateway || held.contains(&candidate)) {
            candidate += 1;
        }
        if candidate > last {
            return Err(NoOverlay::Full {
                name: n.name.clone(),
                subnet: n.subnet,
                prefix: n.prefix,
            });
        }
        held.insert(candidate);
        Ok(NetworkAttachment {
            network: n.name.clone(),
            addr: Ipv4Addr::from(candidate),
            prefix: n.prefix,
            gateway: n.gateway,
        })
    }

    /// Gives back what [`Self::attach`] gave for `refs`.
    pub fn release_all(&mut self, refs: &[NetworkRef], atts: &[NetworkAttachment]) {
        for (r, att) in refs.iter().zip(atts) {
            self.release(r.network, att.addr);
        }
    }

    fn release(&mut self, network: NetworkId, addr: Ipv4Addr) {
        if let Some(set) = self.held.get_mut(&network) {
            set.remove(&u32::from(addr));
        }
    }
}

/// Whether a task of `refs` (a service publishing `ports` ports) goes without an ingress
/// address: every network it is on is internal and it publishes nothing, so it has no route
/// out at all. A network missing from the store counts as not internal.
pub fn without_ingress(alloc: &OverlayAllocator<'_>, refs: &[NetworkRef], ports: usize) -> bool {
    ports == 0
        && !refs.is_empty()
        && refs
            .iter()
            .all(|r| alloc.network(r.network).is_some_and(|n| n.internal))
}
