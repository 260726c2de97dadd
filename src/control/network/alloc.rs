//! The pure half of `network create`: the checks of its flags, the subnet (given, or the next
//! free /24 of `10.0.0.0/8`), the gateway and the VXLAN network identifier. No store, no
//! clock: the caller reads the networks that exist and writes the one made here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use swarm_actors::model::{
    INGRESS_NETWORK, INGRESS_PREFIX, INGRESS_SUBNET, LABELS_MAX, NETWORK_NAME_BYTES_MAX,
    NETWORKS_MAX, Network, NetworkId, OVERLAY_DEFAULT_PREFIX, OVERLAY_POOL, OVERLAY_POOL_PREFIX,
    OVERLAY_PREFIX_MAX, OVERLAY_PREFIX_MIN, VNI_FIRST, prefix_mask, validate_label,
};

use crate::control::proto::NetworkCreate;
use crate::control::validate::docker_name_pattern;

/// The one driver: networks span the nodes over VXLAN.
pub const DRIVER: &str = "overlay";

/// Names Docker keeps for its own networks; a swarm network may not take them.
const RESERVED_NAMES: [&str; 4] = [INGRESS_NETWORK, "host", "bridge", "none"];

/// How many characters of a network's ID name its devices on every node (`swo-<11>`,
/// `swv-<11>`: Linux allows 15 characters); two networks never share them.
pub const ID_CHARS_IN_DEVICES: usize = 11;

/// Docker's rule for network names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, here at most
/// [`NETWORK_NAME_BYTES_MAX`] bytes; never one of Docker's predefined networks.
pub fn validate_network_name(name: &str) -> Result<(), String> {
    if !docker_name_pattern(name) || name.len() > NETWORK_NAME_BYTES_MAX {
        return Err(format!(
            "invalid network name {name:?}: names match [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most {NETWORK_NAME_BYTES_MAX} characters"
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(format!(
            "network name {name} is reserved: the cluster's {name} network is predefined"
        ));
    }
    Ok(())
}

/// `a.b.c.d/p` with `p` in /16–/29 and no host bits set.
pub fn parse_subnet(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let bad = |why: &str| format!("invalid subnet {text:?}: {why}");
    let (addr, prefix) = text
        .split_once('/')
        .ok_or_else(|| bad("give it as ADDRESS/PREFIX, e.g. 10.0.9.0/24"))?;
    let addr: Ipv4Addr = addr
        .trim()
        .parse()
        .map_err(|_| bad("not an IPv4 address"))?;
    let prefix: u8 = prefix
        .trim()
        .parse()
        .map_err(|_| bad("the prefix length is not a number"))?;
    if !(OVERLAY_PREFIX_MIN..=OVERLAY_PREFIX_MAX).contains(&prefix) {
        return Err(bad(&format!(
            "the prefix length must be /{OVERLAY_PREFIX_MIN} to /{OVERLAY_PREFIX_MAX}"
        )));
    }
    if u32::from(addr) & !prefix_mask(prefix) != 0 {
        let net = Ipv4Addr::from(u32::from(addr) & prefix_mask(prefix));
        return Err(bad(&format!(
            "host bits are set: the network address is {net}/{prefix}"
        )));
    }
    if addr.is_loopback()
        || addr.is_multicast()
        || addr.is_link_local()
        || addr.is_broadcast()
        || addr.octets()[0] == 0
        || u32::from(addr) >= u32::from(Ipv4Addr::new(240, 0, 0, 0))
    {
        return Err(bad(
            "loopback, link-local, multicast and reserved addresses cannot be a network",
        ));
    }
    Ok((addr, prefix))
}

/// Whether two subnets share an address.
pub fn overlaps(a: Ipv4Addr, pa: u8, b: Ipv4Addr, pb: u8) -> bool {
    let shorter = pa.min(pb);
    let m = prefix_mask(shorter);
    u32::from(a) & m == u32::from(b) & m
}

/// The subnets already taken: every network's and the ingress network's.
fn taken(existing: &[Network]) -> Vec<(Ipv4Addr, u8, String)> {
    let mut t: Vec<_> = existing
        .iter()
        .map(|n| (n.subnet, n.prefix, n.name.clone()))
        .collect();
    t.push((INGRESS_SUBNET, INGRESS_PREFIX, INGRESS_NETWORK.to_string()));
    t
}

/// The subnet asked for, if it overlaps none; else the lowest free /24 of the pool.
pub fn pick_subnet(
    requested: Option<(Ipv4Addr, u8)>,
    existing: &[Network],
) -> Result<(Ipv4Addr, u8), String> {
    let taken = taken(existing);
    if let Some((addr, prefix)) = requested {
        if let Some((a, p, name)) = taken
            .iter()
            .find(|(a, p, _)| overlaps(addr, prefix, *a, *p))
        {
            return Err(format!(
                "invalid subnet {addr}/{prefix}: it overlaps network {name}'s {a}/{p}"
            ));
        }
        return Ok((addr, prefix));
    }
    let step = 1u32 << (32 - OVERLAY_DEFAULT_PREFIX);
    let first = u32::from(OVERLAY_POOL);
    let count = 1u32 << (OVERLAY_DEFAULT_PREFIX - OVERLAY_POOL_PREFIX);
    (0..count)
        .map(|i| Ipv4Addr::from(first + i * step))
        .find(|c| {
            !taken
                .iter()
                .any(|(a, p, _)| overlaps(*c, OVERLAY_DEFAULT_PREFIX, *a, *p))
        })
        .map(|c| (c, OVERLAY_DEFAULT_PREFIX))
        .ok_or_else(|| {
            format!(
                "no free /{OVERLAY_DEFAULT_PREFIX} is left in {OVERLAY_POOL}/{OVERLAY_POOL_PREFIX}: give --subnet"
            )
        })
}

/// The lowest VXLAN network identifier no network holds, from [`VNI_FIRST`].
pub fn pick_vni(existing: &[Network]) -> u32 {
    let held: BTreeSet<u32> = existing.iter().map(|n| n.vni).collect();
    (VNI_FIRST..)
        .find(|v| !held.contains(v))
        .expect("fewer networks than identifiers")
}

/// Whether `id` would share its device names with a network that exists.
pub fn id_clashes(id: NetworkId, existing: &[Network]) -> bool {
    let head = |id: NetworkId| id.to_string()[..ID_CHARS_IN_DEVICES].to_string();
    id == NetworkId::UNKNOWN || existing.iter().any(|n| head(n.id) == head(id))
}

/// The network `network create` stores, given the networks that exist and a fresh ID (the
/// caller draws again while [`id_clashes`]); every check of the flags is here, so that a
/// refused create writes nothing.
pub fn new_network(
    id: NetworkId,
    req: &NetworkCreate,
    existing: &[Network],
) -> Result<Network, String> {
    validate_network_name(&req.name)?;
    let driver = if req.driver.is_empty() {
        DRIVER
    } else {
        req.driver.as_str()
    };
    if driver != DRIVER {
        return Err(format!(
            "invalid driver {driver:?}: only {DRIVER} networks can be created (they span the nodes)"
        ));
    }
    if existing.iter().any(|n| n.name == req.name) {
        return Err(format!("network with name {} already exists", req.name));
    }
    if existing.len() >= NETWORKS_MAX {
        return Err(format!(
            "the cluster holds {} networks, the most it keeps: remove some first",
            existing.len()
        ));
    }
    let labels: BTreeMap<String, String> = req.labels.iter().cloned().collect();
    if labels.len() > LABELS_MAX {
        return Err(format!("a network may carry at most {LABELS_MAX} labels"));
    }
    for (k, v) in &labels {
        validate_label(k, v).map_err(|e| e.to_string())?;
    }
    let requested = req.subnet.as_deref().map(parse_subnet).transpose()?;
    let (subnet, prefix) = pick_subnet(requested, existing)?;
    assert!(!id_clashes(id, existing), "the caller draws a free ID");
    Ok(Network {
        id,
        name: req.name.clone(),
        driver: DRIVER.into(),
        subnet,
        prefix,
        gateway: Ipv4Addr::from(u32::from(subnet) + 1),
        vni: pick_vni(existing),
        attachable: req.attachable,
        internal: req.internal,
        labels,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An ID whose first characters no test network's share.
    const FRESH: NetworkId = NetworkId(u128::MAX);

    pub(crate) fn net(id: u128, name: &str, subnet: &str) -> Network {
        let (subnet, prefix) = parse_subnet(subnet).unwrap();
        Network {
            id: NetworkId(id),
            name: name.into(),
            driver: DRIVER.into(),
            subnet,
            prefix,
            gateway: Ipv4Addr::from(u32::from(subnet) + 1),
            vni: VNI_FIRST + id as u32,
            attachable: false,
            internal: false,
            labels: BTreeMap::new(),
        }
    }

    fn create(name: &str, subnet: Option<&str>) -> NetworkCreate {
        NetworkCreate {
            name: name.into(),
            driver: DRIVER.into(),
            subnet: subnet.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn the_next_free_slash_24_of_the_pool_is_picked() {
        let n = new_network(FRESH, &create("a", None), &[]).unwrap();
        assert_eq!((n.subnet, n.prefix), (Ipv4Addr::new(10, 0, 0, 0), 24));
        assert_eq!(n.gateway, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(n.vni, VNI_FIRST);
        // A /16 given by hand over 10.0.0.0 pushes the next pick past it.
        let existing = [net(1, "wide", "10.0.0.0/16"), net(2, "b", "10.1.0.0/24")];
        let n = new_network(FRESH, &create("c", None), &existing).unwrap();
        assert_eq!(n.subnet, Ipv4Addr::new(10, 1, 1, 0));
        assert_eq!(
            n.vni, VNI_FIRST,
            "`net` gives VNIs from 4098 up: 4097 is free"
        );
    }

    #[test]
    fn the_lowest_free_vni_is_taken() {
        let mut a = net(1, "a", "10.0.1.0/24");
        a.vni = VNI_FIRST;
        let mut b = net(2, "b", "10.0.2.0/24");
        b.vni = VNI_FIRST + 2;
        assert_eq!(pick_vni(&[a, b]), VNI_FIRST + 1);
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let existing = [net(1, "front", "10.0.9.0/24")];
        let e = |c: NetworkCreate| new_network(FRESH, &c, &existing).unwrap_err();
        assert!(e(create("x", Some("10.0.9.128/25"))).contains("overlaps network front"));
        assert!(e(create("x", Some("10.0.0.0/16"))).contains("overlaps network front"));
        assert!(e(create("x", Some("10.255.3.0/24"))).contains("overlaps network ingress"));
        assert!(e(create("x", Some("10.1.0.0/15"))).contains("/16 to /29"));
        assert!(e(create("x", Some("10.1.0.0/30"))).contains("/16 to /29"));
        assert!(e(create("x", Some("10.1.0.5/24"))).contains("10.1.0.0/24"));
        assert!(e(create("x", Some("127.0.0.0/24"))).contains("loopback"));
        assert!(e(create("x", Some("nope"))).contains("ADDRESS/PREFIX"));
        assert!(e(create("front", None)).contains("already exists"));
        assert!(e(create("ingress", None)).contains("reserved"));
        assert!(e(create("-x", None)).contains("invalid network name"));
        let mut bridge = create("x", None);
        bridge.driver = "bridge".into();
        assert!(e(bridge).contains("only overlay"));
        let ok = new_network(FRESH, &create("back", Some("192.168.4.0/29")), &existing).unwrap();
        assert_eq!(ok.capacity(), 5);
        assert_eq!(ok.gateway, Ipv4Addr::new(192, 168, 4, 1));
    }

    #[test]
    fn device_names_never_clash() {
        let a = net(1, "a", "10.0.1.0/24");
        assert!(id_clashes(NetworkId(1), std::slice::from_ref(&a)));
        // IDs that differ only past the first 11 characters clash too.
        assert!(id_clashes(NetworkId(2), &[a]));
        assert!(id_clashes(NetworkId::UNKNOWN, &[]));
        assert!(!id_clashes(
            NetworkId(u128::MAX),
            &[net(1, "a", "10.0.1.0/24")]
        ));
    }
}
