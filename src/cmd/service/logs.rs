//! `service logs [-f] [--tail N] SERVICE`: lines from every node that ran the service's tasks,
//! prefixed like Docker's (`web.1.<task id>@<host>    | text`). With `-f` the node is asked
//! again every [`FOLLOW_POLL_MS`] and only lines newer than those already printed are shown.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;
use swarm_actors::runtime::{LOG_LINES_MAX, LogStream};

use crate::control::client::Client;
use crate::control::proto::{ControlRequest, ControlResponse, LogEntry};

/// How often `--follow` asks for new lines.
pub const FOLLOW_POLL_MS: u64 = 1_000;

/// `--tail all` or a count; more than the nodes keep is the same as all.
pub fn parse_tail(text: &str) -> Result<usize, String> {
    if text == "all" {
        return Ok(LOG_LINES_MAX);
    }
    text.parse::<usize>()
        .map(|n| n.min(LOG_LINES_MAX))
        .map_err(|_| format!("invalid --tail {text:?}: a number of lines, or all"))
}

pub fn prefix(l: &LogEntry) -> String {
    let short: String = l.task_id.chars().take(12).collect();
    format!("{}.{short}@{}", l.task_name, l.node)
}

/// What `--follow` has printed so far, per task: the newest timestamp and how many lines with
/// exactly that timestamp, since several lines may share a millisecond.
#[derive(Default)]
pub struct Cursor {
    seen: BTreeMap<String, (u64, usize)>,
}

impl Cursor {
    /// The lines of `batch` not printed before, in order; remembers them.
    pub fn fresh(&mut self, batch: Vec<LogEntry>) -> Vec<LogEntry> {
        let mut at_ts: BTreeMap<(String, u64), usize> = BTreeMap::new();
        let mut out = Vec::new();
        for l in batch {
            let (last_ts, last_count) = self.seen.get(&l.task_id).copied().unwrap_or((0, 0));
            if l.ts_ms < last_ts {
                continue;
            }
            let n = at_ts.entry((l.task_id.clone(), l.ts_ms)).or_insert(0);
            *n += 1;
            if l.ts_ms == last_ts && *n <= last_count {
                continue;
            }
            out.push(l);
        }
        for l in &out {
            let e = self.seen.entry(l.task_id.clone()).or_insert((0, 0));
            if l.ts_ms > e.0 {
                *e = (l.ts_ms, 1);
            } else {
                e.1 += 1;
            }
        }
        out
    }
}

async fn fetch(client: &Client, service: &str, tail: usize) -> anyhow::Result<Vec<LogEntry>> {
    let req = ControlRequest::ServiceLogs {
        service: service.to_string(),
        tail,
    };
    match client.call(req).await? {
        ControlResponse::Logs { lines, unreachable } => {
            for u in unreachable {
                eprintln!("Warning: no logs from {u}");
            }
            Ok(lines)
        }
        other => bail!("unexpected answer from the node: {other:?}"),
    }
}

fn print(lines: &[LogEntry], out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    // The prefixes line up, as Docker pads them.
    let width = lines.iter().map(|l| prefix(l).len()).max().unwrap_or(0);
    for l in lines {
        let line = format!("{:<width$}    | {}", prefix(l), l.text);
        match l.stream {
            LogStream::Stdout => writeln!(out, "{line}")?,
            LogStream::Stderr => eprintln!("{line}"),
        }
    }
    Ok(())
}

pub async fn run(
    client: &Client,
    service: &str,
    tail: usize,
    follow: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let mut cursor = Cursor::default();
    let first = cursor.fresh(fetch(client, service, tail).await?);
    print(&first, out)?;
    if !follow {
        return Ok(());
    }
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        out.flush()?;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(FOLLOW_POLL_MS)) => {}
            _ = &mut interrupted => return Ok(()),
        }
        let lines = cursor.fresh(fetch(client, service, LOG_LINES_MAX).await?);
        print(&lines, out)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(task: &str, ts: u64, text: &str) -> LogEntry {
        LogEntry {
            task_id: task.into(),
            task_name: "web.1".into(),
            node: "host-a".into(),
            ts_ms: ts,
            stream: LogStream::Stdout,
            text: text.into(),
        }
    }

    #[test]
    fn prefix_is_dockers() {
        let l = line("abcdefghijklmnopqrstuvwxy", 1, "hi");
        assert_eq!(prefix(&l), "web.1.abcdefghijkl@host-a");
        let mut out = Vec::new();
        print(&[l], &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "web.1.abcdefghijkl@host-a    | hi\n"
        );
    }

    #[test]
    fn follow_prints_each_line_once_even_within_one_millisecond() {
        let mut c = Cursor::default();
        let first = c.fresh(vec![line("a", 1, "one"), line("a", 2, "two")]);
        assert_eq!(first.len(), 2);
        let second = c.fresh(vec![
            line("a", 1, "one"),
            line("a", 2, "two"),
            line("a", 2, "two-bis"),
            line("b", 1, "other task"),
            line("a", 3, "three"),
        ]);
        let texts: Vec<_> = second.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["two-bis", "other task", "three"]);
        assert!(c.fresh(second.clone()).is_empty());
    }

    #[test]
    fn tail_takes_all_or_a_count() {
        assert_eq!(parse_tail("all"), Ok(LOG_LINES_MAX));
        assert_eq!(parse_tail("5"), Ok(5));
        assert_eq!(parse_tail("999999"), Ok(LOG_LINES_MAX));
        assert!(parse_tail("-1").is_err());
    }
}
