//! Tables and JSON lines, printed the way Docker's CLI prints them.

use crate::cmd::units::human_duration;
use crate::control::proto::{ServiceInfo, TaskRow};
use swarm_actors::model::TaskState;

/// Docker's limit on the ERROR column unless `--no-trunc`.
const ERROR_CHARS_MAX: usize = 30;

/// Left-aligned columns separated by at least three spaces, headers first.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{:<w$}   ", cell, w = widths[i]));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// A service's REPLICAS cell: its running tasks over the ones it wants.
pub fn replicas(r: &ServiceInfo) -> String {
    format!("{}/{}", r.running, r.desired)
}

/// `service ls` and `stack services`: Docker's columns, IDs cut to 12 characters.
pub fn service_table(rows: &[ServiceInfo]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.chars().take(12).collect(),
                r.name.clone(),
                r.mode.clone(),
                replicas(r),
                r.image.clone(),
                r.ports.clone(),
            ]
        })
        .collect();
    table(
        &["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"],
        &cells,
    )
}

/// `service ps` and `node ps` (CURRENT STATE like Docker's: "Running 5 seconds ago", "Running
/// less than a second ago"): one group per slot, its current task first and the older ones
/// below it as ` \_ web.1`, newest first; slots in service then slot order.
pub fn task_table(rows: &[TaskRow], now_ms: u64, no_trunc: bool) -> String {
    let headers = [
        "ID",
        "NAME",
        "IMAGE",
        "NODE",
        "ADDRESS",
        "DESIRED STATE",
        "CURRENT STATE",
        "ERROR",
        "PORTS",
    ];
    table(&headers, &task_cells(rows, now_ms, no_trunc))
}

/// The same rows as [`task_table`], one JSON object per line with Docker's keys (`--format
/// json`): full IDs and errors, history rows named like the table's.
pub fn task_json(rows: &[TaskRow], now_ms: u64) -> String {
    let keys = [
        "ID",
        "Name",
        "Image",
        "Node",
        "Address",
        "DesiredState",
        "CurrentState",
        "Error",
        "Ports",
    ];
    let mut out = String::new();
    for (cells, t) in task_cells(rows, now_ms, true).into_iter().zip(sorted(rows)) {
        let mut obj: serde_json::Map<String, serde_json::Value> = keys
            .iter()
            .zip(cells)
            .map(|(k, v)| {
                // JSON carries the error bare, not quoted as the table shows it.
                let v = if *k == "Error" {
                    v.trim_matches('"').to_string()
                } else if *k == "Name" {
                    v.trim_start_matches(" \\_ ").to_string()
                } else {
                    v
                };
                (k.to_string(), serde_json::Value::String(v))
            })
            .collect();
        // Every address with its network and prefix (the table shows the ingress one bare).
        obj.insert("Addresses".into(), serde_json::json!(t.addresses));
        out += &serde_json::Value::Object(obj).to_string();
        out.push('\n');
    }
    out
}

/// Rows by service and slot, each slot's newest task first.
fn sorted(rows: &[TaskRow]) -> Vec<&TaskRow> {
    let mut sorted: Vec<&TaskRow> = rows.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.service, a.slot, &a.name)
            .cmp(&(&b.service, b.slot, &b.name))
            .then(b.created_ms.cmp(&a.created_ms))
            .then(b.id.cmp(&a.id))
    });
    sorted
}

/// The ADDRESS column: the ingress address without its prefix, `-` when there is none.
pub fn ingress_address(t: &TaskRow) -> String {
    t.addresses
        .iter()
        .find_map(|a| a.strip_prefix("ingress="))
        .and_then(|a| a.split('/').next())
        .unwrap_or("-")
        .to_string()
}

/// The cells of the task table, history rows under their slot's newest task.
fn task_cells(rows: &[TaskRow], now_ms: u64, no_trunc: bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut last_name: Option<&str> = None;
    for t in sorted(rows) {
        let name = if last_name == Some(t.name.as_str()) {
            format!(" \\_ {}", t.name)
        } else {
            t.name.clone()
        };
        last_name = Some(&t.name);
        let id = if no_trunc {
            t.id.clone()
        } else {
            t.id.chars().take(12).collect()
        };
        let error = match (t.error.is_empty(), no_trunc) {
            (true, _) => String::new(),
            (false, true) => format!("\"{}\"", t.error),
            (false, false) => format!("\"{}\"", ellipsis(&t.error, ERROR_CHARS_MAX)),
        };
        out.push(vec![
            id,
            name,
            t.image.clone(),
            t.node.clone(),
            ingress_address(t),
            state_word(t.desired),
            format!(
                "{} {} ago",
                state_word(t.state),
                human_duration(now_ms.saturating_sub(t.since_ms)).to_lowercase()
            ),
            error,
            t.ports.clone(),
        ]);
    }
    out
}

/// A task state as Docker prints it: `Running`, `Shutdown`.
fn state_word(s: TaskState) -> String {
    s.to_string()
}

/// Cuts `s` to `max` characters, the last one an ellipsis.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, name: &str, slot: u64, created: u64, state: TaskState) -> TaskRow {
        TaskRow {
            id: id.into(),
            name: name.into(),
            service: "web".into(),
            slot,
            image: "sleep".into(),
            node: "host-a".into(),
            desired: if state == TaskState::Running {
                TaskState::Running
            } else {
                TaskState::Shutdown
            },
            state,
            since_ms: 1_000,
            error: String::new(),
            created_ms: created,
            addresses: Vec::new(),
            ports: String::new(),
        }
    }

    #[test]
    fn task_json_has_dockers_keys_full_values_and_bare_names() {
        let mut failed = row("t3aaaaaaaaaaaaaaaaaaa", "web.1", 1, 10, TaskState::Failed);
        failed.error = "task: non-zero exit (1): a long explanation of what went wrong".into();
        let rows = vec![
            failed.clone(),
            row("t1", "web.1", 1, 30, TaskState::Running),
        ];
        let text = task_json(&rows, 6_500);
        let objs: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0]["ID"], "t1", "newest first: {text}");
        assert_eq!(
            objs[1]["Name"], "web.1",
            "no history marker in JSON: {text}"
        );
        assert_eq!(objs[1]["ID"], failed.id.as_str(), "IDs are not cut");
        assert_eq!(
            objs[1]["Error"],
            failed.error.as_str(),
            "errors are whole, unquoted"
        );
        assert_eq!(objs[1]["DesiredState"], "Shutdown");
        assert!(
            objs[0]["CurrentState"]
                .as_str()
                .unwrap()
                .starts_with("Running ")
        );
    }

    #[test]
    fn task_table_groups_history_under_the_current_task() {
        let mut failed = row("t3aaaaaaaaaaaaaa", "web.1", 1, 10, TaskState::Failed);
        failed.error = "task: non-zero exit (1): the process exited badly".into();
        let rows = vec![
            row("t2", "web.2", 2, 20, TaskState::Running),
            failed,
            row("t1", "web.1", 1, 30, TaskState::Running),
        ];
        let t = task_table(&rows, 6_500, false);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID "), "{t}");
        assert!(
            lines[1].starts_with("t1 ") && lines[1].contains(" web.1 "),
            "{t}"
        );
        assert!(lines[2].contains(" \\_ web.1 "), "{t}");
        assert!(lines[2].starts_with("t3aaaaaaaaaa "), "ID cut to 12: {t}");
        assert!(lines[3].contains(" web.2 "), "{t}");
        assert!(lines[1].contains("Running 5 seconds ago"), "{t}");
        assert!(lines[2].contains("Shutdown ") && lines[2].contains("Failed 5 seconds ago"));
        assert!(
            lines[2].ends_with("\"task: non-zero exit (1): the …\""),
            "{t}"
        );
        let full = task_table(&rows, 6_500, true);
        assert!(full.contains("t3aaaaaaaaaaaaaa"));
        assert!(full.contains("the process exited badly\""));
    }

    #[test]
    fn ellipsis_counts_characters() {
        assert_eq!(ellipsis("short", 10), "short");
        assert_eq!(ellipsis("abcdefghijk", 5), "abcd…");
    }

    #[test]
    fn aligns_columns() {
        let t = table(
            &["ID", "NAME"],
            &[
                vec!["a".into(), "x".into()],
                vec!["long-id".into(), "".into()],
            ],
        );
        assert_eq!(t, "ID        NAME\na         x\nlong-id\n");
    }
}
