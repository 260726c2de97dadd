//! `stack deploy`'s write of a service that exists: the whole spec replaced, or nothing
//! written when it did not change. The pure half is [`replace_write`]; this is the async half
//! (reading the store, resolving names, allocating addresses, proposing, retrying a lost
//! compare-and-set), shaped like `service update`'s.

use swarm_actors::model::{FileKind, ServiceSpec};
use swarm_actors::node::admission;
use swarm_actors::replica::StoreHandle;

use super::change::replace_write;
use super::networks::{self, book, networks_if, resolve_args, written_service};
use super::services;
use crate::control::cas::{self, Failed};
use crate::control::context::ControlContext;
use crate::control::network::ADDRESSES;
use crate::control::proto::NetworkArg;
use crate::control::reads::manager_store;
use crate::control::secret::FileIndex;
use crate::control::validate::validate_spec;

/// The service's ID, and whether its spec was replaced (`false`: it was the same, nothing
/// was written).
pub async fn replace(
    ctx: &ControlContext,
    spec: ServiceSpec,
    network_args: &[NetworkArg],
) -> Result<(String, bool), String> {
    let store = manager_store(ctx).await?;
    validate_spec(&spec)?;
    cas::retrying(|| replace_once(&store, &spec, network_args)).await
}

async fn replace_once(
    store: &StoreHandle,
    spec: &ServiceSpec,
    network_args: &[NetworkArg],
) -> Result<(String, bool), Failed> {
    let all = services(store).await?;
    // By exact name: a stack names its services in full, never by ID.
    let found = all
        .iter()
        .find(|f| f.obj.id == spec.name)
        .cloned()
        .ok_or_else(|| format!("service {} not found", spec.name))?;
    let mut spec = spec.clone();
    if !spec.task.secrets.is_empty() || !spec.task.configs.is_empty() {
        let files = FileIndex::read(store).await?;
        files.resolve_refs(FileKind::Secret, &mut spec.task.secrets)?;
        files.resolve_refs(FileKind::Config, &mut spec.task.configs)?;
    }
    let _one_at_a_time = ADDRESSES.lock().await;
    let nets = networks_if(store, !network_args.is_empty()).await?;
    spec.task.networks = resolve_args(network_args, &nets)?;
    let (id, cmd) = replace_write(&found, spec, &all, admission::now_ms())?;
    let Some(mut cmd) = cmd else {
        return Ok((id, false));
    };
    let service = written_service(&mut cmd);
    let nets = networks_if(store, networks::needs_networks(service)).await?;
    book(store, service, nets).await?.assign(service)?;
    cas::proposed(store.propose(cmd).await)?;
    Ok((id, true))
}
