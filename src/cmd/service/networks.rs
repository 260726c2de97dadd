//! `--network` / `--network-add` / `--network-rm` and `--endpoint-mode` of `service create`
//! and `service update`: parsing only. The node resolves the networks by name or ID, and
//! checks aliases and the endpoint mode with the rest of the spec.

use serde_json::{Value, json};
use swarm_actors::model::{EndpointMode, TaskSpec};

use crate::control::proto::{NetworkArg, ServiceDoc};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EndpointModeArg {
    Vip,
    Dnsrr,
}

impl From<EndpointModeArg> for EndpointMode {
    fn from(m: EndpointModeArg) -> Self {
        match m {
            EndpointModeArg::Vip => EndpointMode::Vip,
            EndpointModeArg::Dnsrr => EndpointMode::Dnsrr,
        }
    }
}

/// A `--network` value: `NAME|ID`, or Docker's long form
/// `name=NAME|ID[,alias=A][,alias=B]` (`target` for `name`).
pub fn parse_network(text: &str) -> Result<NetworkArg, String> {
    let mut arg = NetworkArg::default();
    if !text.contains('=') {
        arg.target = text.trim().to_string();
    } else {
        for field in text.split(',') {
            let (key, value) = field.split_once('=').ok_or_else(|| {
                format!("invalid field {field:?} in --network {text:?}: expected key=value")
            })?;
            match key.trim().to_ascii_lowercase().as_str() {
                "name" | "target" => arg.target = value.trim().to_string(),
                "alias" => arg.aliases.push(value.trim().to_string()),
                other => {
                    return Err(format!(
                        "invalid field {other:?} in --network {text:?}: name or alias"
                    ));
                }
            }
        }
    }
    if arg.target.is_empty() {
        return Err(format!("--network {text:?} needs a network name or ID"));
    }
    Ok(arg)
}

/// Every `--network` value parsed; the first bad one names itself.
pub fn parse_networks(texts: &[String]) -> anyhow::Result<Vec<NetworkArg>> {
    texts
        .iter()
        .map(|t| parse_network(t).map_err(anyhow::Error::msg))
        .collect()
}

/// Docker's `TaskTemplate.Networks`: each network by ID, with the service's aliases on it.
pub fn networks_json(t: &TaskSpec) -> Vec<Value> {
    t.networks
        .iter()
        .map(|r| json!({ "Target": r.network.to_string(), "Aliases": r.aliases }))
        .collect()
}

/// Docker's `Endpoint.VirtualIPs`: the service's VIP on each network, `addr/prefix`.
pub fn virtual_ips_json(d: &ServiceDoc) -> Vec<Value> {
    d.service
        .vips
        .iter()
        .map(|v| {
            let id = v.network.to_string();
            let prefix = d
                .networks
                .iter()
                .find(|n| n.id == id)
                .map_or(32, |n| n.prefix);
            json!({ "NetworkID": id, "Addr": format!("{}/{prefix}", v.addr) })
        })
        .collect()
}

/// `--pretty`'s `Networks:` line, as Docker's: the networks' names (their IDs when the node
/// did not say), and the VIPs.
pub fn networks_pretty(d: &ServiceDoc) -> String {
    let t = &d.service.spec.task;
    if t.networks.is_empty() {
        return String::new();
    }
    let name = |id: String| {
        d.networks
            .iter()
            .find(|n| n.id == id)
            .map_or(id, |n| n.name.clone())
    };
    let mut o = String::from("Networks:");
    for r in &t.networks {
        o += " ";
        o += &name(r.network.to_string());
        if !r.aliases.is_empty() {
            o += &format!(" (aliases: {})", r.aliases.join(", "));
        }
    }
    o += "\n";
    for v in &d.service.vips {
        o += &format!(" VIP {}:\t{}\n", name(v.network.to_string()), v.addr);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::service::inspect::{json_doc, pretty};
    use crate::control::proto::NetworkBrief;
    use crate::control::validate::tests::spec;
    use swarm_actors::model::{NetworkId, NetworkRef, Service, ServiceId, ServiceVip};

    #[test]
    fn inspect_shows_networks_vips_and_the_endpoint_mode() {
        let mut s = spec("my_web");
        s.task.networks = vec![NetworkRef {
            network: NetworkId(7),
            aliases: vec!["web".into()],
        }];
        let mut service = Service::new(ServiceId(42), s);
        service.vips = vec![ServiceVip {
            network: NetworkId(7),
            addr: [10, 0, 9, 254].into(),
        }];
        let mut d = ServiceDoc {
            version: 3,
            created_ms: 0,
            updated_ms: 0,
            service,
            networks: vec![NetworkBrief {
                id: NetworkId(7).to_string(),
                name: "myapp_net".into(),
                prefix: 24,
            }],
        };
        let j = json_doc(&d);
        let id = NetworkId(7).to_string();
        assert_eq!(
            j["Spec"]["TaskTemplate"]["Networks"],
            json!([{ "Target": id, "Aliases": ["web"] }])
        );
        assert_eq!(
            j["Endpoint"]["VirtualIPs"],
            json!([{ "NetworkID": id, "Addr": "10.0.9.254/24" }])
        );
        assert_eq!(j["Spec"]["EndpointSpec"]["Mode"], "vip");
        let p = pretty(&d);
        assert!(p.contains("Networks: myapp_net (aliases: web)\n"), "{p}");
        assert!(p.contains(" VIP myapp_net:\t10.0.9.254\n"), "{p}");
        d.service.spec.endpoint_mode = EndpointMode::Dnsrr;
        d.service.vips.clear();
        assert_eq!(json_doc(&d)["Spec"]["EndpointSpec"]["Mode"], "dnsrr");
        assert!(pretty(&d).contains("Endpoint Mode:\tdnsrr\n"));
    }

    #[test]
    fn network_flags_take_dockers_forms() {
        assert_eq!(
            parse_network("myapp_net").unwrap(),
            NetworkArg {
                target: "myapp_net".into(),
                aliases: vec![]
            }
        );
        assert_eq!(
            parse_network("name=front,alias=web,alias=www").unwrap(),
            NetworkArg {
                target: "front".into(),
                aliases: vec!["web".into(), "www".into()]
            }
        );
        assert!(
            parse_network("alias=web")
                .unwrap_err()
                .contains("needs a network")
        );
        assert!(
            parse_network("name=a,driver-opt=x")
                .unwrap_err()
                .contains("name or alias")
        );
        assert!(
            parse_network("name=a,alias")
                .unwrap_err()
                .contains("key=value")
        );
    }
}
