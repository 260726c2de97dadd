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

#[test]
fn a_record_lists_every_interface_and_reads_back_old_records() {
    let net = TaskNet {
        name: format!("swn-{}", TaskId(9)),
        task: TaskId(9),
        links: vec![
            ("eth0".into(), "{\"type\":\"bridge\"}".into()),
            ("eth1".into(), "{\"bridge\":\"swo-x\"}".into()),
        ],
        record: PathBuf::from("/nonexistent"),
    };
    let text = record_text(&net);
    let (name, lines) = text.split_once('\n').unwrap();
    assert_eq!(name, net.name);
    assert_eq!(record_links(lines), net.links);
    // A record of an earlier version: the name, then eth0's configuration alone.
    assert_eq!(
        record_links("{\"type\":\"bridge\"}\n"),
        vec![("eth0".to_string(), "{\"type\":\"bridge\"}".to_string())]
    );
}

#[test]
fn an_overlay_interface_has_no_route_no_masquerading_and_the_overlay_mtu() {
    let att = NetworkAttachment {
        network: "backend".into(),
        addr: std::net::Ipv4Addr::new(10, 0, 1, 5),
        prefix: 24,
        gateway: std::net::Ipv4Addr::new(10, 0, 1, 1),
    };
    let config: serde_json::Value =
        serde_json::from_str(&overlay_cni_config(&att, "swo-abc")).unwrap();
    assert_eq!(config["bridge"], "swo-abc");
    assert_eq!(config["isGateway"], true);
    assert_eq!(config["isDefaultGateway"], false);
    assert_eq!(config["ipMasq"], false);
    assert_eq!(config["mtu"], 1450);
    assert_eq!(config["ipam"]["addresses"][0]["address"], "10.0.1.5/24");
    assert!(config["ipam"].get("routes").is_none());
    let resolv = resolv_conf(std::net::Ipv4Addr::new(10, 255, 3, 1));
    assert!(resolv.starts_with("nameserver 10.255.3.1\n"), "{resolv}");
    assert!(resolv.ends_with("options ndots:0\n"), "{resolv}");
}
