//! The Docker runtime's overlay networks: one engine network per overlay network a task of the
//! node is on, `swarm-ovl-<11 characters of the network's ID>`, a bridge network on the
//! network's bridge `swo-…` (which the agent made first, with the VXLAN device on it, so the
//! engine leaves it in place when it removes its network), with the network's subnet and
//! gateway, no masquerading, MTU 1450, `internal` when the network is. A container is created
//! on its first network (ingress when it has it) and connected to the others with its address
//! before it starts; its resolver is the node's DNS server (`--dns`: the engine's embedded
//! resolver forwards to it what it does not answer itself).

use std::collections::HashMap;

use bollard::models::{
    EndpointIpamConfig, EndpointSettings, Ipam, IpamConfig, NetworkConnectRequest,
    NetworkCreateRequest,
};
use tracing::info;

use super::{DockerRuntime, LABEL_NODE, LABEL_PREFIX, status};
use crate::model::NodeId;
use crate::runtime::overlay::{OVERLAY_MTU, bridge_name};
use crate::runtime::{OverlayAttachment, RuntimeError, TaskContext};

/// The engine's options of a bridge network.
const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";
const MASQUERADE_OPTION: &str = "com.docker.network.bridge.enable_ip_masquerade";
const MTU_OPTION: &str = "com.docker.network.driver.mtu";
/// The label naming the overlay network an engine network stands for.
pub const LABEL_NETWORK: &str = "com.swarm-node.network.id";

const _: () = assert!(LABEL_NETWORK.len() > LABEL_PREFIX.len());

/// The engine network of an overlay network on this node.
pub fn overlay_network_name(o: &OverlayAttachment) -> String {
    let id = o.network.id.to_string();
    format!("swarm-ovl-{}", &id[..11.min(id.len())])
}

/// The endpoint settings that give a container its address on `o`.
pub(super) fn endpoint(o: &OverlayAttachment) -> EndpointSettings {
    EndpointSettings {
        ipam_config: Some(EndpointIpamConfig {
            ipv4_address: Some(o.attachment.addr.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl DockerRuntime {
    /// Makes sure every engine network of the task exists (the node's, its overlay
    /// networks') and records them for the task's removal; returns those the container is to
    /// be connected to after its creation (all but the first). The caller holds `net_lock`.
    pub(super) async fn ensure_networks<'c>(
        &self,
        ctx: &'c TaskContext,
    ) -> Result<Vec<(String, &'c OverlayAttachment)>, RuntimeError> {
        let mut networks = Vec::new();
        if let Some(att) = &ctx.network {
            networks.push(self.ensure_network(ctx.node_id, att).await?);
        }
        let mut connect = Vec::new();
        for (i, o) in ctx.overlays.iter().enumerate() {
            let network = self.ensure_overlay_network(ctx.node_id, o).await?;
            if ctx.network.is_some() || i > 0 {
                connect.push((network.clone(), o));
            }
            networks.push(network);
        }
        if !networks.is_empty() {
            self.networks
                .lock()
                .expect("networks lock")
                .insert(ctx.task_id, networks);
        }
        Ok(connect)
    }

    /// Makes sure the engine network of `o` exists on the network's bridge. One left with no
    /// container (its bridge may have been made again since) is made again. The caller holds
    /// `net_lock`.
    pub(super) async fn ensure_overlay_network(
        &self,
        node: NodeId,
        o: &OverlayAttachment,
    ) -> Result<String, RuntimeError> {
        let name = overlay_network_name(o);
        match self.docker.inspect_network(&name, None).await {
            Ok(net) if net.containers.as_ref().is_some_and(|c| !c.is_empty()) => {
                return Ok(name);
            }
            Ok(_) => {
                self.docker.remove_network(&name).await.map_err(|e| {
                    RuntimeError::Failed(format!("removing the unused network {name}: {e}"))
                })?;
            }
            Err(e) if status(&e) == Some(404) => {}
            Err(e) => {
                return Err(RuntimeError::Failed(format!(
                    "inspecting network {name}: {e}"
                )));
            }
        }
        let n = &o.network;
        let subnet = format!("{}/{}", n.subnet, n.prefix);
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            internal: Some(n.internal),
            ipam: Some(Ipam {
                driver: Some("default".into()),
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.clone()),
                    gateway: Some(n.gateway.to_string()),
                    ..Default::default()
                }]),
                options: None,
            }),
            options: Some(HashMap::from([
                (BRIDGE_NAME_OPTION.to_string(), bridge_name(n.id)),
                (MASQUERADE_OPTION.to_string(), "false".to_string()),
                (MTU_OPTION.to_string(), OVERLAY_MTU.to_string()),
            ])),
            labels: Some(HashMap::from([
                (LABEL_NODE.to_string(), node.to_string()),
                (LABEL_NETWORK.to_string(), n.id.to_string()),
            ])),
            ..Default::default()
        };
        self.docker.create_network(request).await.map_err(|e| {
            RuntimeError::Failed(format!(
                "creating network {name} ({subnet}) for {}: {e}",
                n.name
            ))
        })?;
        info!(network = %name, overlay = %n.name, %subnet, "made the engine network of an overlay network");
        Ok(name)
    }

    /// Connects the created container `container` to `network` with its address on `o`.
    pub(super) async fn connect_overlay(
        &self,
        container: &str,
        network: &str,
        o: &OverlayAttachment,
    ) -> Result<(), RuntimeError> {
        let request = NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: Some(endpoint(o)),
        };
        self.docker
            .connect_network(network, request)
            .await
            .map_err(|e| {
                RuntimeError::Failed(format!(
                    "connecting {container} to {network} with {}: {e}",
                    o.attachment.addr
                ))
            })
    }
}
