//! `service logs` on the node: asks every node that ran one of the service's tasks for their
//! last lines and merges them by time.
//!
//! ```text
//!  tasks of the service ─▶ group by node ─┬─ this node: AgentHandle::logs (no network)
//!                                          └─ others:   Request::Logs over the transport
//!  each answer, as it comes ─▶ only the tasks asked of that node, `tail` lines each
//!                           ─▶ Gathered: the newest CONTROL_LOG_LINES_MAX lines within
//!                              CONTROL_LOG_BYTES_MAX, merged by timestamp
//! ```
//!
//! Nodes are asked side by side, at most [`LOG_ASKS_AT_ONCE`] at a time, each with its own
//! deadline; one that does not answer is named in the answer instead of failing the whole
//! command. What the node holds is bounded whatever the others send: the answers in flight (a
//! frame each, at most [`LOG_ASKS_AT_ONCE`]) and the lines gathered so far (twice the answer's
//! bounds before they are trimmed).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use swarm_actors::model::{NodeId, TaskId};
use swarm_actors::orchestrator::task_name;
use swarm_actors::runtime::{LOG_LINES_MAX, LogLine};
use swarm_actors::wire::{LOG_TASKS_MAX, Request, Response};

use super::context::ControlContext;
use super::proto::LogEntry;
use super::service::{find, hostname, manager_store, nodes, tasks};

/// How long one node may take to answer a logs request.
pub const LOG_ASK_DEADLINE_MS: u64 = 3_000;

/// Most bytes of log text in one control answer, so that it fits a control frame; the newest
/// lines are kept. Each line's labels and [`LOG_ENTRY_OVERHEAD_BYTES`] count too.
pub const CONTROL_LOG_BYTES_MAX: usize = 512 * 1024;

/// Most lines in one control answer; the newest are kept.
pub const CONTROL_LOG_LINES_MAX: usize = 10_000;

/// What a line costs in the answer besides its texts: its time, its stream, the encoding's
/// field names and quotes.
pub const LOG_ENTRY_OVERHEAD_BYTES: usize = 64;

/// Most nodes asked at once: each answer may be a whole frame, held until it is merged.
pub const LOG_ASKS_AT_ONCE: usize = 32;

/// No node is asked after this long: the control request's own deadline must leave time to
/// answer. Nodes not asked are named in the answer.
pub const LOG_GATHER_MS: u64 = 6_000;

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
                hostname: obj.map_or_else(|| node.to_string(), hostname),
                tasks: Vec::new(),
            }
        });
        entry
            .tasks
            .push((t.id, task_name(&service_name, t.slot, t.node_id)));
    }
    let tail = tail.min(LOG_LINES_MAX);
    let me = ctx.node.id();
    let mut todo = Vec::new();
    for (node, ask) in asks {
        for chunk in ask.tasks.chunks(LOG_TASKS_MAX) {
            let labels: BTreeMap<TaskId, String> = chunk.iter().cloned().collect();
            todo.push((node, ask.addr, ask.hostname.clone(), labels));
        }
    }
    let started = Instant::now();
    let mut todo = todo.into_iter();
    let mut running = tokio::task::JoinSet::new();
    let mut gathered = Gathered::default();
    let mut unreachable = Vec::new();
    loop {
        while running.len() < LOG_ASKS_AT_ONCE {
            let Some((node, addr, hostname, labels)) = todo.next() else {
                break;
            };
            if started.elapsed() >= Duration::from_millis(LOG_GATHER_MS) {
                unreachable.push(format!("{hostname}: not asked, out of time"));
                continue;
            }
            let ctx = ctx.clone();
            running.spawn(async move {
                let ids: Vec<TaskId> = labels.keys().copied().collect();
                let answer = ask_node(&ctx, node == me, addr, ids, tail).await;
                (hostname, labels, answer)
            });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        // A panicked ask loses only its own lines.
        let Ok((hostname, labels, answer)) = done else {
            continue;
        };
        match answer {
            Ok(per_task) => gathered.add(&hostname, &labels, per_task, tail),
            Err(e) => unreachable.push(format!("{hostname}: {e}")),
        }
    }
    Ok((gathered.finish(), unreachable))
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

/// The lines gathered so far. They are trimmed to the answer's bounds whenever they pass twice
/// those bounds, so what is held stays bounded however many nodes answer and whatever they send.
#[derive(Default)]
struct Gathered {
    lines: Vec<LogEntry>,
    bytes: usize,
}

/// What one line costs against [`CONTROL_LOG_BYTES_MAX`]: its texts, labels included.
fn entry_bytes(l: &LogEntry) -> usize {
    l.text.len() + l.task_name.len() + l.node.len() + l.task_id.len() + LOG_ENTRY_OVERHEAD_BYTES
}

impl Gathered {
    /// Adds one node's answer: only the tasks it was asked about (`labels`), each once, with at
    /// most its newest `tail` lines.
    fn add(
        &mut self,
        hostname: &str,
        labels: &BTreeMap<TaskId, String>,
        per_task: Vec<(TaskId, Vec<LogLine>)>,
        tail: usize,
    ) {
        let mut seen = BTreeSet::new();
        for (id, mut task_lines) in per_task {
            let Some(label) = labels.get(&id) else {
                continue; // not asked of this node
            };
            if !seen.insert(id) {
                continue;
            }
            task_lines.drain(..task_lines.len().saturating_sub(tail));
            for l in task_lines {
                let entry = LogEntry {
                    task_id: id.to_string(),
                    task_name: label.clone(),
                    node: hostname.to_string(),
                    ts_ms: l.ts_ms,
                    stream: l.stream,
                    text: l.text,
                };
                self.bytes += entry_bytes(&entry);
                self.lines.push(entry);
                if self.lines.len() >= 2 * CONTROL_LOG_LINES_MAX
                    || self.bytes >= 2 * CONTROL_LOG_BYTES_MAX
                {
                    self.trim();
                }
            }
        }
    }

    /// Sorts by time (stable, so one task's lines keep their order) and keeps the newest lines
    /// within [`CONTROL_LOG_BYTES_MAX`] and [`CONTROL_LOG_LINES_MAX`].
    fn trim(&mut self) {
        self.lines.sort_by_key(|l| l.ts_ms);
        let extra = self.lines.len().saturating_sub(CONTROL_LOG_LINES_MAX);
        self.lines.drain(..extra);
        self.bytes =
            swarm_actors::runtime::keep_newest(&mut self.lines, CONTROL_LOG_BYTES_MAX, entry_bytes);
    }

    fn finish(mut self) -> Vec<LogEntry> {
        self.trim();
        self.lines
    }
}

/// Sorts and trims `lines` as one answer (for the tests).
#[cfg(test)]
fn keep_newest(lines: Vec<LogEntry>) -> Vec<LogEntry> {
    let bytes = lines.iter().map(entry_bytes).sum();
    Gathered { lines, bytes }.finish()
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

    fn answer(task: u128, n: usize, text: &str, ts0: u64) -> (TaskId, Vec<LogLine>) {
        let lines = (0..n)
            .map(|i| LogLine {
                ts_ms: ts0 + i as u64,
                stream: LogStream::Stdout,
                text: text.to_string(),
            })
            .collect();
        (TaskId(task), lines)
    }

    fn asked(tasks: &[u128]) -> BTreeMap<TaskId, String> {
        tasks
            .iter()
            .map(|&t| (TaskId(t), format!("web.{t}")))
            .collect()
    }

    #[test]
    fn what_is_gathered_stays_bounded_in_bytes_whatever_the_nodes_send() {
        tracing::info!("phase: 50 nodes each answer with a frame's worth of long lines");
        let mut g = Gathered::default();
        let text = "x".repeat(1_000);
        for node in 0..50u128 {
            let host = format!("host-{node}");
            g.add(
                &host,
                &asked(&[node]),
                vec![answer(node, 1_000, &text, node as u64 * 10_000)],
                LOG_LINES_MAX,
            );
            let held: usize = g.lines.iter().map(entry_bytes).sum();
            assert_eq!(held, g.bytes);
            assert!(held < 2 * CONTROL_LOG_BYTES_MAX + 2_000, "{held}");
        }
        let out = g.finish();
        let bytes: usize = out.iter().map(entry_bytes).sum();
        assert!(bytes <= CONTROL_LOG_BYTES_MAX, "{bytes}");
        assert!(
            out.iter().all(|l| l.node == "host-49"),
            "the newest lines are kept"
        );
    }

    #[test]
    fn what_is_gathered_stays_bounded_in_count_whatever_the_nodes_send() {
        tracing::info!("phase: 100 nodes each answer with 1,000 empty lines");
        let mut g = Gathered::default();
        for node in 0..100u128 {
            g.add(
                "h",
                &asked(&[node]),
                vec![answer(node, 1_000, "", node as u64 * 1_000)],
                1_000,
            );
            assert!(g.lines.len() < 2 * CONTROL_LOG_LINES_MAX);
        }
        let out = g.finish();
        // Each line costs its labels and overhead, so the byte bound may bind first.
        assert!(out.len() <= CONTROL_LOG_LINES_MAX, "{}", out.len());
        assert!(out.iter().map(entry_bytes).sum::<usize>() <= CONTROL_LOG_BYTES_MAX);
        assert!(out.len() > CONTROL_LOG_LINES_MAX / 2, "{}", out.len());
        assert_eq!(out.last().unwrap().ts_ms, 99 * 1_000 + 999);
    }

    #[test]
    fn an_answer_keeps_only_what_was_asked() {
        tracing::info!(
            "phase: a node answers for a task it was not asked about, twice for one, and past the tail"
        );
        let mut g = Gathered::default();
        g.add(
            "h",
            &asked(&[1]),
            vec![
                answer(1, 50, "a", 0),
                answer(1, 50, "again", 100),
                answer(2, 50, "not asked", 0),
            ],
            10,
        );
        let out = g.finish();
        assert_eq!(out.len(), 10);
        assert!(out.iter().all(|l| l.text == "a" && l.task_name == "web.1"));
        assert_eq!(out[0].ts_ms, 40, "the newest `tail` lines");
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
