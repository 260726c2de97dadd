//! The Docker runtime's network of a node: one bridge network per node, `swarm-node-<node id
//! prefix>`, labelled with the node, whose subnet is the node's slice of the ingress network and
//! whose gateway is the slice's first address. A task's container is attached to it with the
//! address the leader gave the task, so replicas on one node can all listen on the same port
//! and the routing mesh reaches each at its own address.
//!
//! The network is made on the first task that needs it and removed when the last container on
//! it is (and by `adopt_or_clean` when a previous run left it empty). Its Linux bridge is the
//! one the process runtime's CNI plugin uses ([`bridge_name`]), so that both runtimes of a node
//! share one bridge for the one slice: two bridges with one subnet would give the host two
//! routes to it, and one of them would not work. As root the runtime makes the bridge itself
//! before asking the engine for the network: the engine then leaves an existing bridge in place
//! when it removes the network, so process tasks on it keep their link. (Without root the
//! engine makes and removes the bridge; process tasks then share the host's network anyway.)

use std::collections::HashMap;

use bollard::models::{
    EndpointIpamConfig, EndpointSettings, Ipam, IpamConfig, NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::ListNetworksOptions;
use tracing::{info, warn};

use super::{DockerRuntime, LABEL_NODE, TaskEndpoint, status};
use crate::model::{NetworkAttachment, NodeId, TaskId};
use crate::runtime::{RuntimeError, TaskContext, bridge_name, running_as_root};

/// The engine's option naming a bridge network's Linux bridge.
const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";
/// Networks one `adopt_or_clean` looks at.
pub const NETWORKS_MAX: usize = 1_000;

/// The node's network: `swarm-node-` and the node's short ID.
pub fn network_name(node: NodeId) -> String {
    format!("swarm-node-{}", node.short())
}

/// `10.255.3.0/24` for an address in that slice.
fn slice(att: &NetworkAttachment) -> String {
    format!("{}/{}", att.subnet(), att.prefix)
}

/// What attaches a container to its first network with its address: the node's network
/// when the task has an ingress address, else its first overlay network's (it is connected to
/// the others before it starts).
pub(super) fn networking(ctx: &TaskContext) -> Option<(String, NetworkingConfig)> {
    let Some(att) = ctx.network.as_ref() else {
        let first = ctx.overlays.first()?;
        let name = super::overlay_net::overlay_network_name(first);
        let config = NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                name.clone(),
                super::overlay_net::endpoint(first),
            )])),
        };
        return Some((name, config));
    };
    let name = network_name(ctx.node_id);
    let endpoint = EndpointSettings {
        ipam_config: Some(EndpointIpamConfig {
            ipv4_address: Some(att.addr.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let config = NetworkingConfig {
        endpoints_config: Some(HashMap::from([(name.clone(), endpoint)])),
    };
    Some((name, config))
}

impl DockerRuntime {
    /// Makes sure the node's network exists with `att`'s slice. The caller holds `net_lock`,
    /// so that a removal cannot come between this and the container's creation.
    pub(super) async fn ensure_network(
        &self,
        node: NodeId,
        att: &NetworkAttachment,
    ) -> Result<String, RuntimeError> {
        let name = network_name(node);
        let want = slice(att);
        match self.docker.inspect_network(&name, None).await {
            Ok(net) => {
                let has = net
                    .ipam
                    .and_then(|i| i.config)
                    .and_then(|c| c.into_iter().find_map(|c| c.subnet));
                if has.as_deref() == Some(want.as_str()) {
                    return Ok(name);
                }
                // The node was given another slice (it left and came back): the old network
                // goes if nothing uses it.
                if net.containers.is_some_and(|c| !c.is_empty()) {
                    return Err(RuntimeError::Failed(format!(
                        "network {name} has subnet {} but the task's address is in {want}, and \
                         containers still use it",
                        has.unwrap_or_default()
                    )));
                }
                self.docker
                    .remove_network(&name)
                    .await
                    .map_err(|e| RuntimeError::Failed(format!("removing network {name}: {e}")))?;
            }
            Err(e) if status(&e) == Some(404) => {}
            Err(e) => {
                return Err(RuntimeError::Failed(format!(
                    "inspecting network {name}: {e}"
                )));
            }
        }
        self.clear_stale_networks(&name, &want).await;
        let bridge = bridge_name(node);
        if running_as_root() {
            super::super::netns::clear_stale_bridges(&bridge, att).await;
            ensure_bridge(&bridge).await?;
        }
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                driver: Some("default".into()),
                config: Some(vec![IpamConfig {
                    subnet: Some(want.clone()),
                    gateway: Some(att.gateway.to_string()),
                    ..Default::default()
                }]),
                options: None,
            }),
            options: Some(HashMap::from([(BRIDGE_NAME_OPTION.to_string(), bridge)])),
            labels: Some(HashMap::from([(LABEL_NODE.to_string(), node.to_string())])),
            ..Default::default()
        };
        self.docker
            .create_network(request)
            .await
            .map_err(|e| RuntimeError::Failed(format!("creating network {name} ({want}): {e}")))?;
        info!(network = %name, subnet = %want, "made the node's task network");
        Ok(name)
    }

    /// Removes `name` when no container is attached to it any more. The caller holds
    /// `net_lock`.
    pub(super) async fn release_network(&self, name: &str) {
        let net = match self.docker.inspect_network(name, None).await {
            Ok(net) => net,
            Err(e) if status(&e) == Some(404) => return,
            Err(e) => {
                warn!(network = %name, error = %e, "cannot inspect the node's network");
                return;
            }
        };
        if net.containers.is_some_and(|c| !c.is_empty()) {
            return;
        }
        match self.docker.remove_network(name).await {
            Ok(()) => info!(network = %name, "removed the node's task network: no task uses it"),
            // Gone already, or a container joined it meanwhile (another node's runtime).
            Err(e) if matches!(status(&e), Some(404 | 403 | 409)) => {}
            Err(e) => warn!(network = %name, error = %e, "cannot remove the node's network"),
        }
    }

    /// A kept container of an earlier run: its address on the node's network, when it has
    /// one, is where the mesh reaches it again.
    pub(super) fn adopt_endpoint(
        &self,
        node: NodeId,
        task: TaskId,
        c: &bollard::models::ContainerSummary,
    ) {
        let name = network_name(node);
        let ip = c
            .network_settings
            .as_ref()
            .and_then(|s| s.networks.as_ref())
            .and_then(|n| n.get(&name))
            .and_then(|e| e.ip_address.as_deref())
            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok());
        if let Some(ip) = ip {
            self.networks
                .lock()
                .expect("networks lock")
                .insert(task, vec![name]);
            self.endpoints.set(
                task,
                TaskEndpoint {
                    ip,
                    ports: std::collections::BTreeMap::new(),
                    host_network: false,
                    overlay: std::collections::BTreeMap::new(),
                },
            );
        }
    }

    /// The node's networks a previous run left with no container on them go.
    /// Removes the networks of other nodes on this engine that hold `subnet` with no container
    /// attached: networks earlier nodes left (an earlier cluster on this machine, a node started
    /// again with a new data dir), which would make the engine refuse this node's network as
    /// overlapping. One with containers belongs to a live node: left, and the create says why.
    async fn clear_stale_networks(&self, own: &str, subnet: &str) {
        let opts = ListNetworksOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![LABEL_NODE.to_string()],
            )])),
        };
        let Ok(nets) = self.docker.list_networks(Some(opts)).await else {
            return;
        };
        for net in nets.into_iter().take(NETWORKS_MAX) {
            let Some(name) = net.name.filter(|n| n != own) else {
                continue;
            };
            let Ok(full) = self.docker.inspect_network(&name, None).await else {
                continue;
            };
            let holds = full
                .ipam
                .and_then(|i| i.config)
                .is_some_and(|c| c.iter().any(|c| c.subnet.as_deref() == Some(subnet)));
            if !holds || full.containers.is_some_and(|c| !c.is_empty()) {
                continue;
            }
            match self.docker.remove_network(&name).await {
                Ok(()) => {
                    info!(network = %name, %subnet, "removed a network an earlier node left with this node's slice")
                }
                Err(e) => {
                    warn!(network = %name, error = %e, "a stale network holding this node's slice was not removed")
                }
            }
        }
    }

    pub(super) async fn clean_networks(&self, node: NodeId) {
        let opts = ListNetworksOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![format!("{LABEL_NODE}={node}")],
            )])),
        };
        let nets = match self.docker.list_networks(Some(opts)).await {
            Ok(nets) => nets,
            Err(e) => {
                warn!(error = %e, "cannot list the node's networks");
                return;
            }
        };
        let _held = self.net_lock.lock().await;
        for net in nets.into_iter().take(NETWORKS_MAX) {
            if let Some(name) = net.name {
                self.release_network(&name).await;
            }
        }
    }
}

/// Makes the node's bridge when it is not there, so that the engine finds it existing and
/// leaves it in place when it removes the network (see the module's documentation).
async fn ensure_bridge(bridge: &str) -> Result<(), RuntimeError> {
    let exists = || async {
        super::super::netns::ip(&["link", "show", "dev", bridge])
            .await
            .is_ok()
    };
    if exists().await {
        return Ok(());
    }
    let made = async {
        super::super::netns::ip(&["link", "add", bridge, "type", "bridge"]).await?;
        super::super::netns::ip(&["link", "set", bridge, "up"]).await
    }
    .await;
    // Another runtime of this node may have made it meanwhile.
    match made {
        Err(_) if exists().await => Ok(()),
        Err(why) => Err(RuntimeError::Failed(format!(
            "making bridge {bridge}: {why}"
        ))),
        Ok(()) => Ok(()),
    }
}
