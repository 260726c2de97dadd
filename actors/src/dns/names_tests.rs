use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{Answer, answer};
use crate::model::{EndpointMode, NetworkId, NodeId, ServiceId, TaskId};
use crate::wire::{MeshBackend, MeshNetwork, MeshService, MeshServiceNet, MeshTable};

const FRONT: NetworkId = NetworkId(1);
const BACK: NetworkId = NetworkId(2);
const OTHER: NetworkId = NetworkId(3);

fn net(id: NetworkId, third: u8) -> MeshNetwork {
    MeshNetwork {
        id,
        name: format!("net{}", id.0),
        subnet: Ipv4Addr::new(10, 0, third, 0),
        prefix: 24,
        gateway: Ipv4Addr::new(10, 0, third, 1),
        vni: 4096 + third as u32,
        internal: false,
    }
}

fn backend(task: u128, slot: u64, overlay: &[(u16, [u8; 4])]) -> MeshBackend {
    MeshBackend {
        task: TaskId(task),
        node: NodeId(task % 2),
        node_addr: "127.0.0.1:1".parse().unwrap(),
        addr: None,
        slot,
        overlay: overlay
            .iter()
            .map(|(n, a)| (*n, Ipv4Addr::from(*a)))
            .collect(),
    }
}

fn snet(network: u16, vip: Option<[u8; 4]>, aliases: &[&str]) -> MeshServiceNet {
    MeshServiceNet {
        network,
        vip: vip.map(Ipv4Addr::from),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
    }
}

/// `web` (VIP) on front (alias `www`) and back; `db` (dnsrr) on back; `vault` on other.
fn table() -> MeshTable {
    let web = MeshService {
        id: ServiceId(10),
        name: "web".into(),
        ports: Vec::new(),
        endpoint_mode: EndpointMode::Vip,
        networks: vec![
            snet(0, Some([10, 0, 1, 254]), &["www"]),
            snet(1, Some([10, 0, 2, 254]), &[]),
        ],
        backends: vec![
            backend(101, 1, &[(0, [10, 0, 1, 2]), (1, [10, 0, 2, 2])]),
            backend(102, 2, &[(0, [10, 0, 1, 3]), (1, [10, 0, 2, 3])]),
            backend(103, 3, &[(0, [10, 0, 1, 4]), (1, [10, 0, 2, 4])]),
        ],
    };
    let db = MeshService {
        id: ServiceId(20),
        name: "db".into(),
        ports: Vec::new(),
        endpoint_mode: EndpointMode::Dnsrr,
        networks: vec![snet(1, None, &["database"])],
        backends: vec![
            backend(201, 1, &[(1, [10, 0, 2, 10])]),
            backend(202, 2, &[(1, [10, 0, 2, 11])]),
        ],
    };
    let vault = MeshService {
        id: ServiceId(30),
        name: "vault".into(),
        ports: Vec::new(),
        endpoint_mode: EndpointMode::Vip,
        networks: vec![snet(2, Some([10, 0, 3, 254]), &[])],
        backends: vec![backend(301, 1, &[(2, [10, 0, 3, 2])])],
    };
    MeshTable {
        version: 7,
        services: vec![web, db, vault],
        networks: vec![net(FRONT, 1), net(BACK, 2), net(OTHER, 3)],
        nodes: Vec::new(),
    }
}

fn on(nets: &[NetworkId]) -> BTreeSet<NetworkId> {
    nets.iter().copied().collect()
}

fn ask(nets: &[NetworkId], name: &str) -> Answer {
    answer(&table(), &on(nets), name, &mut StdRng::seed_from_u64(1))
}

fn sorted(a: Answer) -> Vec<Ipv4Addr> {
    match a {
        Answer::Ours(mut v) => {
            v.sort();
            v
        }
        Answer::Forward => panic!("forwarded"),
    }
}

fn ips(list: &[[u8; 4]]) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = list.iter().map(|a| Ipv4Addr::from(*a)).collect();
    v.sort();
    v
}

#[test]
fn a_service_name_answers_its_vip_on_the_networks_the_asker_shares() {
    assert_eq!(sorted(ask(&[FRONT], "web")), ips(&[[10, 0, 1, 254]]));
    assert_eq!(sorted(ask(&[BACK], "web.")), ips(&[[10, 0, 2, 254]]));
    assert_eq!(
        sorted(ask(&[FRONT, BACK], "WEB")),
        ips(&[[10, 0, 1, 254], [10, 0, 2, 254]])
    );
    eprintln!("phase: a task on no network of the service does not learn of it");
    assert_eq!(ask(&[OTHER], "web"), Answer::Forward);
    assert_eq!(ask(&[], "web"), Answer::Forward);
    assert_eq!(ask(&[FRONT], "vault"), Answer::Forward);
    assert_eq!(ask(&[FRONT], "tasks.db"), Answer::Forward);
}

#[test]
fn tasks_names_answer_the_tasks_addresses_on_shared_networks() {
    assert_eq!(
        sorted(ask(&[FRONT], "tasks.web")),
        ips(&[[10, 0, 1, 2], [10, 0, 1, 3], [10, 0, 1, 4]])
    );
    assert_eq!(
        sorted(ask(&[BACK], "tasks.web.")),
        ips(&[[10, 0, 2, 2], [10, 0, 2, 3], [10, 0, 2, 4]])
    );
    assert_eq!(
        sorted(ask(&[BACK], "tasks.db")),
        ips(&[[10, 0, 2, 10], [10, 0, 2, 11]])
    );
}

#[test]
fn dnsrr_answers_the_tasks_and_no_vip() {
    assert_eq!(
        sorted(ask(&[BACK], "db")),
        ips(&[[10, 0, 2, 10], [10, 0, 2, 11]])
    );
    eprintln!("phase: a dnsrr service with no task in rotation is ours, with no address");
    let mut t = table();
    t.services[1].backends.clear();
    let a = answer(&t, &on(&[BACK]), "db", &mut StdRng::seed_from_u64(1));
    assert_eq!(a, Answer::Ours(Vec::new()));
}

#[test]
fn aliases_answer_only_on_their_own_network() {
    assert_eq!(sorted(ask(&[FRONT], "www")), ips(&[[10, 0, 1, 254]]));
    assert_eq!(
        sorted(ask(&[FRONT, BACK], "www")),
        ips(&[[10, 0, 1, 254]]),
        "the alias is given on front only"
    );
    assert_eq!(ask(&[BACK], "www"), Answer::Forward);
    assert_eq!(
        sorted(ask(&[FRONT], "tasks.www")),
        ips(&[[10, 0, 1, 2], [10, 0, 1, 3], [10, 0, 1, 4]])
    );
    assert_eq!(
        sorted(ask(&[BACK], "database")),
        ips(&[[10, 0, 2, 10], [10, 0, 2, 11]]),
        "a dnsrr alias answers the tasks"
    );
}

#[test]
fn a_task_name_answers_that_task_only() {
    let task = TaskId(102).to_string();
    assert_eq!(
        sorted(ask(&[FRONT], &format!("web.2.{task}"))),
        ips(&[[10, 0, 1, 3]])
    );
    assert_eq!(
        sorted(ask(&[FRONT, BACK], &format!("web.2.{task}."))),
        ips(&[[10, 0, 1, 3], [10, 0, 2, 3]])
    );
    eprintln!("phase: a wrong slot, service or task ID is not ours");
    assert_eq!(ask(&[FRONT], &format!("web.1.{task}")), Answer::Forward);
    assert_eq!(ask(&[FRONT], &format!("db.2.{task}")), Answer::Forward);
    assert_eq!(ask(&[OTHER], &format!("web.2.{task}")), Answer::Forward);
    assert_eq!(ask(&[FRONT], "web.2.nosuchtask"), Answer::Forward);
}

#[test]
fn answers_are_shuffled() {
    let t = table();
    let mut rng = StdRng::seed_from_u64(7);
    let orders: BTreeSet<Vec<Ipv4Addr>> = (0..50)
        .map(|_| match answer(&t, &on(&[FRONT]), "tasks.web", &mut rng) {
            Answer::Ours(v) => v,
            Answer::Forward => panic!("forwarded"),
        })
        .collect();
    // Three addresses have six orders; fifty draws see more than one (all six, nearly surely).
    assert!(orders.len() > 3, "{orders:?}");
    assert!(orders.iter().all(|o| o.len() == 3));
}

#[test]
fn unknown_names_are_forwarded() {
    assert_eq!(ask(&[FRONT, BACK], "example.com"), Answer::Forward);
    assert_eq!(ask(&[FRONT, BACK], "tasks."), Answer::Forward);
    assert_eq!(ask(&[FRONT, BACK], "tasks.nosuch"), Answer::Forward);
    assert_eq!(ask(&[FRONT, BACK], "web.example.com"), Answer::Forward);
}
