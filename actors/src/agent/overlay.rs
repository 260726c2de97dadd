//! The agent's part in the overlay networks: what a starting task's context says of its
//! networks (its addresses, the networks as the routing-mesh table describes them, its DNS
//! server), and keeping this node's bridges, VXLAN devices, flood entries and VIPs in step
//! with its tasks and the latest table (see [`runtime::overlay`](crate::runtime::overlay)).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use tracing::warn;

use crate::model::{INGRESS_NETWORK, NetworkAttachment, NodeId, TaskId};
use crate::runtime::OverlayAttachment;
use crate::runtime::overlay::{Host, Overlays, local_addr, wanted};
use crate::wire::{MeshNetwork, MeshTable};

/// A task's overlay attachments, in the order the leader gave them (its spec's), each with
/// the network as the table describes it, and its DNS server: the gateway of its first
/// attachment (ingress when it has it, else its first overlay network). Fails, naming the
/// network, when the table does not describe one of them (the table is older than the
/// network: the task is refused and placed again).
pub fn task_networks(
    attachments: &[NetworkAttachment],
    table: Option<&MeshTable>,
) -> Result<(Vec<OverlayAttachment>, Option<Ipv4Addr>), String> {
    let mut overlays = Vec::new();
    for att in attachments.iter().filter(|a| a.network != INGRESS_NETWORK) {
        let network = table
            .and_then(|t| t.networks.iter().find(|n| n.name == att.network))
            .cloned()
            .ok_or_else(|| {
                format!(
                    "network {} is not in this node's routing-mesh table yet",
                    att.network
                )
            })?;
        overlays.push(OverlayAttachment {
            attachment: att.clone(),
            network,
        });
    }
    let dns = attachments
        .iter()
        .find(|a| a.network == INGRESS_NETWORK)
        .map(|a| a.gateway)
        .or(overlays.first().map(|o| o.attachment.gateway));
    Ok((overlays, dns))
}

/// This node's overlay networks: what its tasks are on, and the devices made for them.
pub struct NodeOverlays {
    /// None without root: no device can be made, and tasks are not attached.
    overlays: Option<Overlays>,
    /// The networks of each task of this node on any, until the task is removed.
    tasks: BTreeMap<TaskId, Vec<MeshNetwork>>,
}

impl NodeOverlays {
    /// The node's overlays (as root), redirecting VIP connections to `vip_port`.
    pub fn new(vip_port: Option<u16>) -> NodeOverlays {
        let overlays =
            crate::runtime::running_as_root().then(|| Overlays::new(Host::default(), vip_port));
        NodeOverlays {
            overlays,
            tasks: BTreeMap::new(),
        }
    }

    /// Removes what an earlier run of this node left. Call once, before any task starts.
    pub async fn sweep(&self) {
        if let Some(o) = &self.overlays {
            o.sweep().await;
        }
    }

    /// Makes sure `task`'s networks are up on this node before it starts; the task is
    /// counted from now on. Fails, naming the network, when one could not be made (the task is
    /// then not counted).
    pub async fn task_starting(
        &mut self,
        me: NodeId,
        table: Option<&MeshTable>,
        task: TaskId,
        overlays: &[OverlayAttachment],
    ) -> Result<(), String> {
        if overlays.is_empty() {
            return Ok(());
        }
        if self.overlays.is_none() {
            warn!(%task, "the task is on overlay networks, but this node does not run as root: it cannot make their bridges, and the task is not attached to them");
            return Ok(());
        }
        self.tasks
            .insert(task, overlays.iter().map(|o| o.network.clone()).collect());
        let failed = self.sync(me, table).await;
        if let Some(o) = overlays.iter().find(|o| failed.contains_key(&o.network.id)) {
            let why = failed[&o.network.id].clone();
            self.tasks.remove(&task);
            return Err(format!("network {}: {why}", o.network.name));
        }
        Ok(())
    }

    /// `task` is gone from this node: a network no task is on any more is removed.
    pub async fn task_removed(&mut self, me: NodeId, table: Option<&MeshTable>, task: TaskId) {
        if self.tasks.remove(&task).is_some() {
            self.sync(me, table).await;
        }
    }

    /// Brings the devices in step with the tasks and `table` (a new table: peers, VIPs).
    pub async fn sync(
        &self,
        me: NodeId,
        table: Option<&MeshTable>,
    ) -> BTreeMap<crate::model::NetworkId, String> {
        let Some(o) = &self.overlays else {
            return BTreeMap::new();
        };
        let mut mine = BTreeMap::new();
        for net in self.tasks.values().flatten() {
            mine.insert(net.id, net.clone());
        }
        o.sync(&wanted(table, me, &mine), local_addr(table, me))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NetworkId;

    fn table() -> MeshTable {
        MeshTable {
            networks: vec![MeshNetwork {
                id: NetworkId(7),
                name: "backend".into(),
                subnet: Ipv4Addr::new(10, 0, 1, 0),
                prefix: 24,
                gateway: Ipv4Addr::new(10, 0, 1, 1),
                vni: 4097,
                internal: false,
            }],
            ..Default::default()
        }
    }

    fn att(network: &str, addr: [u8; 4], gateway: [u8; 4]) -> NetworkAttachment {
        NetworkAttachment {
            network: network.into(),
            addr: addr.into(),
            prefix: 24,
            gateway: gateway.into(),
        }
    }

    #[test]
    fn the_dns_server_is_on_the_first_attachment() {
        let t = table();
        let ingress = att(INGRESS_NETWORK, [10, 255, 3, 2], [10, 255, 3, 1]);
        let backend = att("backend", [10, 0, 1, 2], [10, 0, 1, 1]);
        let (o, dns) = task_networks(&[ingress.clone(), backend.clone()], Some(&t)).unwrap();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].network.id, NetworkId(7));
        assert_eq!(o[0].attachment, backend);
        assert_eq!(dns, Some(Ipv4Addr::new(10, 255, 3, 1)));
        let (_, dns) = task_networks(std::slice::from_ref(&backend), Some(&t)).unwrap();
        assert_eq!(
            dns,
            Some(Ipv4Addr::new(10, 0, 1, 1)),
            "no ingress: the overlay's"
        );
        let (o, dns) = task_networks(&[ingress], None).unwrap();
        assert!(o.is_empty());
        assert_eq!(dns, Some(Ipv4Addr::new(10, 255, 3, 1)));
    }

    #[test]
    fn a_network_the_table_does_not_know_refuses_the_task() {
        let err = task_networks(
            &[att("front", [10, 0, 2, 2], [10, 0, 2, 1])],
            Some(&table()),
        )
        .unwrap_err();
        assert!(err.contains("network front"), "{err}");
    }
}
