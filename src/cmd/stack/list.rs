//! `stack ls`, `stack services` and `stack ps`: `service ls` and `service ps`, narrowed to
//! the services labelled with a stack.

use std::collections::BTreeMap;

use anyhow::bail;
use serde_json::json;

use super::{all_services, json_format, nothing_found, of_stack, stack_of};
use crate::control::client::Client;
use crate::control::proto::{ControlRequest, ControlResponse, ServiceInfo, TaskRow};
use crate::output::{replicas, service_table, table, task_json, task_table};

/// Each stack's name and how many services it has, by name.
pub fn stacks(rows: &[ServiceInfo]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in rows {
        if let Some(stack) = stack_of(&r.labels) {
            *out.entry(stack.to_string()).or_insert(0) += 1;
        }
    }
    out
}

/// `stack ls`'s table (Docker's NAME and SERVICES), or JSON lines.
pub fn ls_text(stacks: &BTreeMap<String, usize>, json: bool) -> String {
    if json {
        return stacks
            .iter()
            .map(|(name, n)| format!("{}\n", json!({ "Name": name, "Services": n.to_string() })))
            .collect();
    }
    let cells: Vec<Vec<String>> = stacks
        .iter()
        .map(|(name, n)| vec![name.clone(), n.to_string()])
        .collect();
    table(&["NAME", "SERVICES"], &cells)
}

pub async fn ls(
    client: &Client,
    format: Option<&str>,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let json = json_format(format)?;
    let rows = all_services(client).await?;
    write!(out, "{}", ls_text(&stacks(&rows), json))?;
    Ok(())
}

/// `stack services`' output: `service ls`'s table, IDs (`-q`) or JSON lines with Docker's
/// keys.
pub fn services_text(rows: &[ServiceInfo], quiet: bool, json: bool) -> String {
    if quiet {
        return rows.iter().map(|r| format!("{}\n", r.id)).collect();
    }
    if json {
        return rows
            .iter()
            .map(|r| {
                let line = json!({
                    "ID": r.id.chars().take(12).collect::<String>(),
                    "Image": r.image,
                    "Mode": r.mode,
                    "Name": r.name,
                    "Ports": r.ports,
                    "Replicas": replicas(r),
                });
                format!("{line}\n")
            })
            .collect();
    }
    service_table(rows)
}

pub async fn services(
    client: &Client,
    stack: &str,
    quiet: bool,
    format: Option<&str>,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let json = json_format(format)?;
    let rows = of_stack(all_services(client).await?, stack);
    if rows.is_empty() {
        // Docker says so and succeeds.
        writeln!(out, "{}", nothing_found(stack))?;
        return Ok(());
    }
    write!(out, "{}", services_text(&rows, quiet, json))?;
    Ok(())
}

pub async fn ps(
    client: &Client,
    stack: &str,
    no_trunc: bool,
    quiet: bool,
    format: Option<&str>,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let json = json_format(format)?;
    let services = of_stack(all_services(client).await?, stack);
    let mut rows: Vec<TaskRow> = Vec::new();
    for s in &services {
        let req = ControlRequest::ServicePs {
            service: s.id.clone(),
        };
        match client.call(req).await {
            Ok(ControlResponse::Tasks(tasks)) => rows.extend(tasks),
            Ok(other) => bail!("unexpected answer from the node: {other:?}"),
            // Removed since the list was read: it has no tasks to show.
            Err(e) if e.to_string().contains("not found") => {}
            Err(e) => return Err(e),
        }
    }
    if rows.is_empty() {
        // Docker's words (an error, unlike `stack services`).
        bail!("nothing found in stack: {stack}");
    }
    let now_ms = now_ms();
    if quiet {
        for r in &rows {
            writeln!(out, "{}", r.id)?;
        }
    } else if json {
        write!(out, "{}", task_json(&rows, now_ms))?;
    } else {
        write!(out, "{}", task_table(&rows, now_ms, no_trunc))?;
    }
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::NAMESPACE_LABEL;

    pub(crate) fn row(name: &str, stack: Option<&str>) -> ServiceInfo {
        ServiceInfo {
            id: format!("{:0>25}", name.len()),
            name: name.into(),
            mode: "replicated".into(),
            running: 1,
            desired: 2,
            image: "busybox".into(),
            ports: "*:8080->80/tcp".into(),
            labels: stack
                .map(|s| BTreeMap::from([(NAMESPACE_LABEL.to_string(), s.to_string())]))
                .unwrap_or_default(),
        }
    }

    #[test]
    fn ls_counts_the_services_of_each_stack() {
        let rows = vec![
            row("wp_db", Some("wp")),
            row("lonely", None),
            row("wp_wordpress", Some("wp")),
            row("app_web", Some("app")),
        ];
        let text = ls_text(&stacks(&rows), false);
        assert_eq!(
            text, "NAME   SERVICES\napp    1\nwp     2\n",
            "one row per stack, by name; unlabelled services are no stack's"
        );
        assert_eq!(
            ls_text(&stacks(&rows), true),
            "{\"Name\":\"app\",\"Services\":\"1\"}\n{\"Name\":\"wp\",\"Services\":\"2\"}\n"
        );
        assert_eq!(ls_text(&stacks(&[]), false), "NAME   SERVICES\n");
    }

    #[test]
    fn services_lists_only_the_stacks_own_by_name() {
        let rows = of_stack(
            vec![
                row("wp_wordpress", Some("wp")),
                row("wp_db", Some("wp")),
                row("wp_other", Some("wp2")),
                row("wp_x", None),
            ],
            "wp",
        );
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["wp_db", "wp_wordpress"]);
        let text = services_text(&rows, false, false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID "), "{text}");
        assert!(lines[0].ends_with("PORTS"), "{text}");
        assert!(
            lines[1].contains("wp_db") && lines[1].contains("1/2"),
            "{text}"
        );
        let quiet = services_text(&rows, true, false);
        assert_eq!(quiet.lines().count(), 2);
        assert_eq!(quiet.lines().next(), Some(rows[0].id.as_str()));
        let json = services_text(&rows, false, true);
        let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
        assert_eq!(first["Name"], "wp_db");
        assert_eq!(first["Replicas"], "1/2");
        assert_eq!(first["Ports"], "*:8080->80/tcp");
    }
}
