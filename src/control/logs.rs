//! `service logs` on the node: asks every node that ran one of the service's tasks for their
//! last lines and merges them by time.
//!
//! ```text
//!  tasks of the service ─▶ group by node ─┬─ this node: AgentHandle::logs (no network)
//!                                          └─ others:   Request::Logs over the transport
//!  answers ─▶ merge by timestamp ─▶ keep the newest CONTROL_LOG_BYTES_MAX bytes
//! ```
//!
//! Nodes are asked at once, each with its own deadline; one that does not answer is named in
//! the answer instead of failing the whole command.

use std::collections::BTreeMap;
use std::time::Duration;

use swarm_actors::model::{NodeId, TaskId};
use swarm_actors::orchestrator::task_name;
use swarm_actors::runtime::{LOG_LINES_MAX, LogLine};
use swarm_actors::wire::{LOG_TASKS_MAX, Request, Response};

use super::proto::LogEntry;
use super::server::ControlContext;
use super::service::{find, manager_store, nodes, tasks};

/// How long one node may take to answer a logs request.
pub const LOG_ASK_DEADLINE_MS: u64 = 3_000;

/// Most bytes of log text in one control answer, so that it fits a control frame; the newest
/// lines are kept.
pub const CONTROL_LOG_BYTES_MAX: usize = 512 * 1024;

/// What one node is asked: its tasks, and how to label their lines.
struct NodeAsk {
    addr: Option<std::net::SocketAddr>,
    hostname: String,
    tasks: Vec<(TaskId, String)>,
}

pub async fn logs(
    ctx: &ControlContext,
    name: &str,
    tail: usize,
) -> Result<(Vec<LogEntry>, Vec<String>), String> {
    let store = manager_store(ctx).await?;
    let service = find(&store, name).await?;
    let service_name = service.obj.id.clone();
    let nodes = nodes(&store).await?;
    let mut asks: BTreeMap<NodeId, NodeAsk> = BTreeMap::new();
    for t in tasks(&store).await? {
        let Some(node) = t.node_id else { continue };
        if t.service_id != service.service.id {
            continue;
        }
        let entry = asks.entry(node).or_insert_with(|| {
            let obj = nodes.iter().find(|n| n.id == node);
            NodeAsk {
                addr: obj.map(|n| n.addr),
                hostname: obj
                    .and_then(|n| n.description.as_ref())
                    .map(|d| d.hostname.clone())
                    .unwrap_or_else(|| node.to_string()),
                tasks: Vec::new(),
            }
        });
        entry
            .tasks
            .push((t.id, task_name(&service_name, t.slot, t.node_id)));
    }
    let tail = tail.min(LOG_LINES_MAX);
    let me = ctx.node.id();
    let mut pending = Vec::new();
    for (node, ask) in asks {
        for chunk in ask.tasks.chunks(LOG_TASKS_MAX) {
            let ids: Vec<TaskId> = chunk.iter().map(|(id, _)| *id).collect();
            let labels: BTreeMap<TaskId, String> = chunk.iter().cloned().collect();
            let hostname = ask.hostname.clone();
            let addr = ask.addr;
            let ctx = ctx.clone();
            pending.push(async move {
                let answer = ask_node(&ctx, node == me, addr, ids, tail).await;
                (hostname, labels, answer)
            });
        }
    }
    let mut lines = Vec::new();
    let mut unreachable = Vec::new();
    for (hostname, labels, answer) in futures_join(pending).await {
        match answer {
            Ok(per_task) => {
                for (id, task_lines) in per_task {
                    let label = labels.get(&id).cloned().unwrap_or_default();
                    lines.extend(task_lines.into_iter().map(|l| LogEntry {
                        task_id: id.to_string(),
                        task_name: label.clone(),
                        node: hostname.clone(),
                        ts_ms: l.ts_ms,
                        stream: l.stream,
                        text: l.text,
                    }));
                }
            }
            Err(e) => unreachable.push(format!("{hostname}: {e}")),
        }
    }
    Ok((keep_newest(lines), unreachable))
}

/// Runs the asks side by side: each has its own deadline, so the slowest bounds the wait.
async fn futures_join<F: std::future::Future + Send + 'static>(futs: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        // A panicked ask loses only its own lines.
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

async fn ask_node(
    ctx: &ControlContext,
    local: bool,
    addr: Option<std::net::SocketAddr>,
    tasks: Vec<TaskId>,
    tail: usize,
) -> Result<Vec<(TaskId, Vec<LogLine>)>, String> {
    let deadline = Duration::from_millis(LOG_ASK_DEADLINE_MS);
    let answer = if local {
        let agent = ctx
            .agent
            .as_ref()
            .ok_or_else(|| "this node runs no agent".to_string())?;
        tokio::time::timeout(deadline, agent.logs(tasks, tail)).await
    } else {
        let addr = addr.ok_or_else(|| "its address is not known".to_string())?;
        let req = Request::Logs { tasks, tail };
        match tokio::time::timeout(deadline, ctx.node.ask(addr, req)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(e) => Err(e),
        }
    };
    match answer {
        Ok(Response::Logs(per_task)) => Ok(per_task),
        Ok(Response::Failed(f)) => Err(f.to_string()),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(_) => Err(format!("no answer within {LOG_ASK_DEADLINE_MS} ms")),
    }
}

/// Sorts by time (stable, so one task's lines keep their order) and keeps the newest lines
/// that fit [`CONTROL_LOG_BYTES_MAX`].
fn keep_newest(mut lines: Vec<LogEntry>) -> Vec<LogEntry> {
    lines.sort_by_key(|l| l.ts_ms);
    // Labels travel with each line too.
    swarm_actors::runtime::keep_newest(&mut lines, CONTROL_LOG_BYTES_MAX, |l| {
        l.text.len() + l.task_name.len() + l.node.len() + l.task_id.len()
    });
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_actors::runtime::LogStream;

    fn line(task: &str, ts: u64, text: &str) -> LogEntry {
        LogEntry {
            task_id: task.into(),
            task_name: "web.1".into(),
            node: "h".into(),
            ts_ms: ts,
            stream: LogStream::Stdout,
            text: text.into(),
        }
    }

    #[test]
    fn merges_by_time_keeping_each_tasks_order() {
        let merged = keep_newest(vec![
            line("a", 10, "a1"),
            line("a", 30, "a2"),
            line("b", 20, "b1"),
            line("b", 30, "b2"),
        ]);
        let texts: Vec<_> = merged.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["a1", "b1", "a2", "b2"]);
    }

    #[test]
    fn keeps_the_newest_lines_within_the_bound() {
        let big = "x".repeat(CONTROL_LOG_BYTES_MAX / 2);
        let merged = keep_newest(vec![
            line("a", 1, &big),
            line("a", 2, &big),
            line("a", 3, "last"),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[1].text, "last");
        assert_eq!(merged[0].ts_ms, 2);
    }
}
