//! `swarm-node shell`: the admin shell. Every client command without the `swarm-node` prefix,
//! plus `actors` (the named actors on the node) and `send <actor> <Message> [json]`. Line
//! editing, history (`~/.swarm-node_history`, bounded) and completion of verbs and actor
//! names come from rustyline.

use anyhow::bail;
use clap::Parser;
use rustyline::completion::Completer;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};

use super::{Command, run_client};
use crate::control::client::Client;
use crate::control::proto::{ControlRequest, ControlResponse};

/// Lines of history kept.
const HISTORY_MAX: usize = 1_000;

const VERBS: &[&str] = &[
    "node",
    "ls",
    "inspect",
    "swarm",
    "join-token",
    "worker",
    "manager",
    "--rotate",
    "--pretty",
    "--format",
    "json",
    "actors",
    "send",
    "help",
    "exit",
    "quit",
];

/// A shell line parsed as a command.
#[derive(Parser, Debug)]
#[command(name = "", no_binary_name = true, disable_version_flag = true)]
struct Line {
    #[command(subcommand)]
    command: Command,
}

pub async fn actors(client: &Client, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    match client.call(ControlRequest::Actors).await? {
        ControlResponse::Actors(list) => {
            for (name, msgs) in list {
                writeln!(out, "{name}\t{}", msgs.join(" "))?;
            }
            Ok(())
        }
        other => bail!("unexpected answer from the node: {other:?}"),
    }
}

pub async fn send(
    client: &Client,
    actor: &str,
    msg: &str,
    args: &str,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let req = ControlRequest::Send {
        actor: actor.to_string(),
        msg: msg.to_string(),
        args: args.to_string(),
    };
    match client.call(req).await? {
        ControlResponse::Reply(json) => {
            writeln!(out, "{json}")?;
            Ok(())
        }
        other => bail!("unexpected answer from the node: {other:?}"),
    }
}

async fn actor_names(client: &Client) -> Vec<(String, Vec<String>)> {
    match client.call(ControlRequest::Actors).await {
        Ok(ControlResponse::Actors(list)) => list,
        _ => Vec::new(),
    }
}

pub async fn run(client: &Client) -> anyhow::Result<()> {
    let client = client.clone();
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || repl(&client, &rt)).await?
}

fn repl(client: &Client, rt: &tokio::runtime::Handle) -> anyhow::Result<()> {
    let mut words: Vec<String> = VERBS.iter().map(|s| s.to_string()).collect();
    for (name, msgs) in rt.block_on(actor_names(client)) {
        words.push(name);
        words.extend(msgs);
    }
    words.sort();
    words.dedup();
    let mut rl: Editor<ShellHelper, DefaultHistory> = Editor::with_config(
        rustyline::Config::builder()
            .max_history_size(HISTORY_MAX)?
            .auto_add_history(true)
            .build(),
    )?;
    rl.set_helper(Some(ShellHelper { words }));
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".swarm-node_history"));
    if let Some(h) = &history {
        // No history yet is the common case at first use.
        let _ = rl.load_history(h);
    }
    loop {
        let line = match rl.readline("swarm-node> ") {
            Ok(l) => l,
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if matches!(line, "exit" | "quit") {
            break;
        }
        let mut out = std::io::stdout();
        if let Err(e) = rt.block_on(one_line(line, client, &mut out)) {
            println!("Error: {e:#}");
        }
    }
    if let Some(h) = &history {
        // Losing history is not worth failing the shell for.
        let _ = rl.save_history(h);
    }
    Ok(())
}

async fn one_line(line: &str, client: &Client, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    // `send` keeps the rest of the line whole, so JSON arguments may contain spaces.
    if let Some(rest) = line.strip_prefix("send ") {
        let mut parts = rest.trim_start().splitn(3, char::is_whitespace);
        let actor = parts.next().unwrap_or_default();
        let Some(msg) = parts.next() else {
            bail!("usage: send <actor> <Message> [json args]");
        };
        let args = parts.next().unwrap_or("");
        return send(client, actor, msg, args, out).await;
    }
    let words = line.split_whitespace();
    match Line::try_parse_from(words) {
        Ok(Line {
            command: Command::Shell,
        }) => bail!("already in the shell"),
        Ok(Line {
            command: Command::Start(_),
        }) => {
            bail!("`start` runs a node; run it outside the shell")
        }
        Ok(parsed) => Box::pin(run_client(parsed.command, client, out)).await,
        Err(e) => {
            // Help and usage errors are printed, not failures of the shell.
            write!(out, "{e}")?;
            Ok(())
        }
    }
}

struct ShellHelper {
    words: Vec<String>,
}

impl Completer for ShellHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let start = line[..pos]
            .rfind(char::is_whitespace)
            .map(|i| i + 1)
            .unwrap_or(0);
        let prefix = &line[start..pos];
        let found = self
            .words
            .iter()
            .filter(|w| w.starts_with(prefix))
            .cloned()
            .collect();
        Ok((start, found))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}
