//! The names the embedded DNS server answers itself, as a pure function of the latest mesh
//! table and the networks of the task that asks (sans-IO: the RNG that shuffles the answer is
//! an argument).
//!
//! | name | answer, on each network the asker shares with the service |
//! |---|---|
//! | `<service>` | the service's VIP (`vip` mode), or its tasks' addresses (`dnsrr`) |
//! | `<alias>` | as `<service>`, on the network the alias is given on only |
//! | `tasks.<service>`, `tasks.<alias>` | the addresses of the service's tasks in rotation |
//! | `<service>.<slot>.<task id>` | that task's addresses (slot 0 for a global service's task) |
//!
//! Names are matched without regard to case, with or without the final dot. A name that none
//! of these match, or that matches only on networks the asker is not on, is not ours: the
//! server forwards it to the host's resolvers, so a task cannot learn that a service it cannot
//! reach exists.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use rand::seq::SliceRandom;

use crate::model::{EndpointMode, NetworkId, TaskId};
use crate::wire::{MeshService, MeshTable};

/// Most addresses in one answer. A UDP answer that does not fit 512 bytes (or the asker's
/// EDNS size) is truncated and the resolver asks again over TCP, which carries them all.
pub const ANSWER_ADDRS_MAX: usize = 256;

/// The prefix of the names that answer every task of a service.
const TASKS_PREFIX: &str = "tasks.";

/// What the table says about one name, for one asker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The name is ours: these addresses (shuffled, possibly none: a dnsrr service with no
    /// task in rotation), and no other record type.
    Ours(Vec<Ipv4Addr>),
    /// Not a name of this cluster that the asker may see: for the host's resolvers.
    Forward,
}

/// Answers `name` for a task on `networks`, shuffling the addresses with `rng`.
pub fn answer(
    table: &MeshTable,
    networks: &BTreeSet<NetworkId>,
    name: &str,
    rng: &mut impl rand::Rng,
) -> Answer {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    // The table's networks the asker is on, by their index in the table.
    let shared: BTreeSet<u16> = table
        .networks
        .iter()
        .enumerate()
        .filter(|(_, n)| networks.contains(&n.id))
        .filter_map(|(i, _)| u16::try_from(i).ok())
        .collect();
    if shared.is_empty() {
        return Answer::Forward;
    }
    let mut found = false;
    let mut addrs: Vec<Ipv4Addr> = Vec::new();
    for service in &table.services {
        let wanted = |alias_ok: &dyn Fn(&str) -> bool| -> Vec<u16> {
            service
                .networks
                .iter()
                .filter(|n| shared.contains(&n.network))
                .filter(|n| alias_ok(&service.name) || n.aliases.iter().any(|a| alias_ok(a)))
                .map(|n| n.network)
                .collect()
        };
        // `<service>` and `<alias>`: the VIP, or the tasks in dnsrr mode.
        let nets = wanted(&|n: &str| n.eq_ignore_ascii_case(&name));
        if !nets.is_empty() {
            found = true;
            service_addrs(service, &nets, &mut addrs);
        }
        // `tasks.<service>` and `tasks.<alias>`.
        if let Some(rest) = name.strip_prefix(TASKS_PREFIX) {
            let nets = wanted(&|n: &str| n.eq_ignore_ascii_case(rest));
            if !nets.is_empty() {
                found = true;
                task_addrs(service, &nets, None, &mut addrs);
            }
        }
        // `<service>.<slot>.<task id>`.
        if let Some((task, slot)) = task_name(service, &name) {
            let nets = wanted(&|_| true);
            let before = addrs.len();
            task_addrs(service, &nets, Some((task, slot)), &mut addrs);
            found |= addrs.len() > before;
        }
    }
    if !found {
        return Answer::Forward;
    }
    let mut seen = BTreeSet::new();
    addrs.retain(|a| seen.insert(*a));
    addrs.shuffle(rng);
    addrs.truncate(ANSWER_ADDRS_MAX);
    Answer::Ours(addrs)
}

/// The task `name` points at when it reads `<service>.<slot>.<task id>` for `service`.
fn task_name(service: &MeshService, name: &str) -> Option<(TaskId, u64)> {
    let (rest, task) = name.rsplit_once('.')?;
    let (svc, slot) = rest.rsplit_once('.')?;
    if !svc.eq_ignore_ascii_case(&service.name) {
        return None;
    }
    Some((task.parse().ok()?, slot.parse().ok()?))
}

/// What `<service>` answers on `nets`: its VIP there, or in dnsrr mode its tasks' addresses.
fn service_addrs(service: &MeshService, nets: &[u16], out: &mut Vec<Ipv4Addr>) {
    match service.endpoint_mode {
        EndpointMode::Vip => out.extend(
            service
                .networks
                .iter()
                .filter(|n| nets.contains(&n.network))
                .filter_map(|n| n.vip),
        ),
        EndpointMode::Dnsrr => task_addrs(service, nets, None, out),
    }
}

/// The addresses on `nets` of the service's tasks in rotation, or of the one task `only`
/// (with its slot) names.
fn task_addrs(
    service: &MeshService,
    nets: &[u16],
    only: Option<(TaskId, u64)>,
    out: &mut Vec<Ipv4Addr>,
) {
    for b in &service.backends {
        if only.is_some_and(|(task, slot)| b.task != task || b.slot != slot) {
            continue;
        }
        out.extend(
            b.overlay
                .iter()
                .filter(|(n, _)| nets.contains(n))
                .map(|(_, a)| *a),
        );
    }
}

#[cfg(test)]
#[path = "names_tests.rs"]
mod tests;
