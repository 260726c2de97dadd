//! Published ports in the control API: the checks a service's ports pass, the published port
//! picked for a port that names only its target, and the refusal of a port another service
//! publishes. Pure functions over the specs the caller read; `service` calls them in its
//! compare-and-set writes.
//!
//! A published port is the cluster's, not a node's: in ingress mode every node listens on it,
//! so two services may not publish one number with one protocol. Host mode is the exception
//! Docker makes: two host-mode ports of different services may share a number, because the
//! scheduler never puts two such tasks on one node.
//!
//! The check reads every other service, then writes this one. Writes on one manager are
//! serialized by the caller (`network::ADDRESSES`, held for the read and the write); two
//! writes on two managers at the same instant that take the same free port can both pass (the
//! store's compare-and-set covers one object). The window is one round trip of the store; the
//! mesh reports a port it cannot bind twice.

use std::collections::BTreeSet;

use swarm_actors::model::{
    PUBLISHED_PORT_AUTO_MAX, PUBLISHED_PORT_AUTO_MIN, PortConfig, PortProtocol, PublishMode,
    ServiceId,
};

use super::reads::Found;
#[cfg(test)]
use super::validate::validate_ports;
#[cfg(test)]
use swarm_actors::model::PORTS_PER_SERVICE_MAX;

/// Whether two services' ports clash: the same number and protocol, unless both are host-mode.
fn clashes(a: &PortConfig, b: &PortConfig) -> bool {
    a.published == b.published
        && a.protocol == b.protocol
        && !(a.mode == PublishMode::Host && b.mode == PublishMode::Host)
}

/// Gives every port of `ports` with published 0 a published port, and refuses a port another
/// service publishes. `own` is the service being written (its stored ports are no conflict);
/// `kept` its ports before this write: a target-only port that matches one of them (target,
/// protocol, mode) keeps that one's published port, so an update that repeats `--publish 80`
/// does not move the service to a new port. A picked port is the lowest of
/// [`PUBLISHED_PORT_AUTO_MIN`]..=[`PUBLISHED_PORT_AUTO_MAX`] that no other service publishes
/// with that protocol (in any mode) and this service does not use.
pub fn allocate(
    ports: &mut [PortConfig],
    own: ServiceId,
    kept: &[PortConfig],
    services: &[Found],
) -> Result<(), String> {
    let others: Vec<(&str, &PortConfig)> = services
        .iter()
        .filter(|f| f.service.id != own)
        .flat_map(|f| f.service.spec.ports.iter().map(|p| (f.obj.id.as_str(), p)))
        .collect();
    for p in ports.iter().filter(|p| p.published != 0) {
        if let Some((name, q)) = others.iter().find(|(_, q)| clashes(p, q)) {
            return Err(format!(
                "port {}/{} is already in use by service '{name}' as {} port",
                p.published,
                p.protocol.as_str(),
                match q.mode {
                    PublishMode::Ingress => "an ingress",
                    PublishMode::Host => "a host",
                }
            ));
        }
    }
    let mut taken: BTreeSet<(u16, PortProtocol)> = others
        .iter()
        .map(|(_, q)| (q.published, q.protocol))
        .chain(ports.iter().map(|p| (p.published, p.protocol)))
        .collect();
    for port in ports.iter_mut().filter(|p| p.published == 0) {
        let p = *port;
        let same = |k: &&PortConfig| {
            (k.target, k.protocol, k.mode) == (p.target, p.protocol, p.mode)
                && (PUBLISHED_PORT_AUTO_MIN..=PUBLISHED_PORT_AUTO_MAX).contains(&k.published)
                && !taken.contains(&(k.published, k.protocol))
        };
        let published = match kept.iter().find(same) {
            Some(k) => k.published,
            None => (PUBLISHED_PORT_AUTO_MIN..=PUBLISHED_PORT_AUTO_MAX)
                .find(|n| !taken.contains(&(*n, p.protocol)))
                .ok_or_else(|| {
                    format!(
                        "no free published port for {}/{}: every port of {PUBLISHED_PORT_AUTO_MIN}-{PUBLISHED_PORT_AUTO_MAX} is in use",
                        p.target,
                        p.protocol.as_str()
                    )
                })?,
        };
        taken.insert((published, p.protocol));
        port.published = published;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::service::tests::stored;

    fn with_ports(name: &str, id: u128, ports: Vec<PortConfig>) -> Found {
        let mut f = stored(name, id);
        f.service.spec.ports = ports;
        f
    }

    fn host(published: u16, target: u16) -> PortConfig {
        PortConfig {
            mode: PublishMode::Host,
            ..PortConfig::tcp(published, target)
        }
    }

    fn udp(published: u16, target: u16) -> PortConfig {
        PortConfig {
            protocol: PortProtocol::Udp,
            ..PortConfig::tcp(published, target)
        }
    }

    #[test]
    fn ports_need_a_target_no_duplicates_and_a_bound() {
        assert!(validate_ports(&[PortConfig::tcp(8080, 80), udp(8080, 80)]).is_ok());
        // Two target-only ports are two picks, not a duplicate.
        assert!(validate_ports(&[PortConfig::tcp(0, 80), PortConfig::tcp(0, 81)]).is_ok());
        let err = validate_ports(&[PortConfig::tcp(8080, 0)]).unwrap_err();
        assert!(err.contains("target"), "{err}");
        let err =
            validate_ports(&[PortConfig::tcp(8080, 80), PortConfig::tcp(8080, 81)]).unwrap_err();
        assert!(err.contains("duplicate published port 8080/tcp"), "{err}");
        let many: Vec<_> = (0..=PORTS_PER_SERVICE_MAX as u16)
            .map(|i| PortConfig::tcp(1000 + i, 80))
            .collect();
        assert!(validate_ports(&many).unwrap_err().contains("at most 64"));
    }

    #[test]
    fn another_services_port_is_refused_naming_it() {
        let web = with_ports("web", 1, vec![PortConfig::tcp(8080, 80), host(9000, 80)]);
        let all = [web];
        let mut mine = vec![PortConfig::tcp(8080, 81)];
        let err = allocate(&mut mine, ServiceId(2), &[], &all).unwrap_err();
        assert_eq!(
            err,
            "port 8080/tcp is already in use by service 'web' as an ingress port"
        );
        // Host mode against ingress is refused too, either way round.
        let mut mine = vec![host(8080, 81)];
        assert!(allocate(&mut mine, ServiceId(2), &[], &all).is_err());
        let mut mine = vec![PortConfig::tcp(9000, 81)];
        let err = allocate(&mut mine, ServiceId(2), &[], &all).unwrap_err();
        assert!(err.contains("as a host port"), "{err}");
        // Two host-mode ports share a number; another protocol is another port.
        let mut mine = vec![host(9000, 81), udp(8080, 80)];
        allocate(&mut mine, ServiceId(2), &[], &all).unwrap();
        // The service's own ports are no conflict when it is updated.
        let mut mine = vec![PortConfig::tcp(8080, 80)];
        allocate(&mut mine, ServiceId(1), &[], &all).unwrap();
    }

    #[test]
    fn a_target_only_port_gets_the_lowest_free_port_of_the_range() {
        let all = [
            with_ports("a", 1, vec![PortConfig::tcp(30000, 80), udp(30001, 53)]),
            with_ports("b", 2, vec![host(30001, 80)]),
        ];
        let mut mine = vec![
            PortConfig::tcp(0, 80),
            udp(0, 53),
            PortConfig::tcp(30002, 81),
            PortConfig::tcp(0, 82),
        ];
        allocate(&mut mine, ServiceId(3), &[], &all).unwrap();
        // 30000 and 30001 are taken for TCP (host mode counts), 30002 is the service's own.
        assert_eq!(mine[0].published, 30003);
        assert_eq!(mine[1].published, 30000);
        assert_eq!(mine[3].published, 30004);
        validate_ports(&mine).unwrap();
    }

    #[test]
    fn an_update_keeps_the_port_picked_before() {
        let kept = vec![PortConfig::tcp(30005, 80)];
        let all = [with_ports("web", 1, kept.clone())];
        let mut mine = vec![PortConfig::tcp(0, 80), PortConfig::tcp(0, 80)];
        allocate(&mut mine, ServiceId(1), &kept, &all).unwrap();
        // The first keeps 30005; the second is a new pick.
        assert_eq!((mine[0].published, mine[1].published), (30005, 30000));
    }

    #[test]
    fn a_full_range_is_a_clear_error() {
        let range = PUBLISHED_PORT_AUTO_MIN..=PUBLISHED_PORT_AUTO_MAX;
        let all: Vec<Found> = range
            .clone()
            .collect::<Vec<_>>()
            .chunks(PORTS_PER_SERVICE_MAX)
            .enumerate()
            .map(|(i, c)| {
                let ports = c.iter().map(|n| PortConfig::tcp(*n, 80)).collect();
                with_ports(&format!("s{i}"), 100 + i as u128, ports)
            })
            .collect();
        let mut mine = vec![PortConfig::tcp(0, 80)];
        let err = allocate(&mut mine, ServiceId(1), &[], &all).unwrap_err();
        assert!(err.contains("no free published port for 80/tcp"), "{err}");
        let mut mine = vec![udp(0, 80)];
        allocate(&mut mine, ServiceId(1), &[], &all).unwrap();
        assert_eq!(mine[0].published, PUBLISHED_PORT_AUTO_MIN);
    }
}
