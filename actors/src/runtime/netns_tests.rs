//! Unit tests of the pieces of a task's network that need no root.
use super::*;
use crate::model::PublishMode;

#[test]
fn bridge_names_fit_an_interface_name() {
    let name = bridge_name(NodeId(u128::MAX / 3));
    assert!(name.len() <= 15, "{name}");
    assert!(name.starts_with("swn-"));
    assert_ne!(name, bridge_name(NodeId(u128::MAX / 5)));
}

#[test]
fn host_ports_pick_one_free_port_per_target_and_name_them() {
    let mut udp = PortConfig::tcp(5353, 53);
    udp.protocol = crate::model::PortProtocol::Udp;
    let mut host = PortConfig::tcp(9000, 80);
    host.mode = PublishMode::Host;
    let ports = vec![
        PortConfig::tcp(8080, 80),
        udp,
        PortConfig::tcp(8443, 443),
        host,
    ];
    let picked = host_ports(&ports).unwrap();
    assert_eq!(
        picked.keys().copied().collect::<Vec<_>>(),
        vec![53, 80, 443]
    );
    for port in picked.values() {
        assert_ne!(*port, 0);
    }
    let env = port_env(&ports, &picked);
    assert_eq!(env[0], ("PORT".to_string(), picked[&80].to_string()));
    assert!(env.contains(&("SWARM_PORT_53".to_string(), picked[&53].to_string())));
    assert!(env.contains(&("SWARM_PORT_443".to_string(), picked[&443].to_string())));
    assert_eq!(env.len(), 4);
}

#[test]
fn the_plugin_configuration_names_the_bridge_the_slice_and_the_address() {
    let att = NetworkAttachment {
        network: "ingress".into(),
        addr: "10.255.7.9".parse().unwrap(),
        prefix: 24,
        gateway: "10.255.7.1".parse().unwrap(),
    };
    let node = NodeId(u128::MAX / 7);
    let v: serde_json::Value = serde_json::from_str(&cni_config(node, &att)).unwrap();
    assert_eq!(v["type"], "bridge");
    assert_eq!(v["bridge"], bridge_name(node));
    assert_eq!(v["isGateway"], true);
    assert_eq!(v["ipam"]["type"], "static");
    assert_eq!(v["ipam"]["addresses"][0]["address"], "10.255.7.9/24");
    assert_eq!(v["ipam"]["addresses"][0]["gateway"], "10.255.7.1");
}
