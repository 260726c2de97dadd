//! `swarm-node secret create | ls | inspect | rm` and the same for `config`, with Docker's
//! verbs, flags and output. One module serves both kinds: they differ in the size bound, the
//! default target, and in that a config's data can be read back (`config inspect`), a secret's
//! never.

use std::io::Read;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use swarm_actors::model::{FileKind, SecretBytes, validate_secret_data};

use super::service::inspect::rfc3339;
use super::service::parse_label;
use super::units::human_duration;
use crate::control::client::Client;
use crate::control::proto::{ControlRequest, ControlResponse, SecretDoc};
use crate::output::table;

#[derive(Subcommand, Debug)]
pub enum FileCmd {
    /// Create one from a file, or from standard input with `-`.
    Create {
        /// Letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit (a
        /// name starting with `-` is taken as a name, and refused as one).
        #[arg(allow_hyphen_values = true)]
        name: String,
        /// The file holding the data, or `-` for standard input.
        file: String,
        /// Label key=value (repeatable).
        #[arg(short, long = "label")]
        labels: Vec<String>,
    },
    /// List them: ID, NAME, CREATED, UPDATED.
    Ls {
        /// Only IDs.
        #[arg(short, long)]
        quiet: bool,
        /// `json`: one object per line, Docker's keys.
        #[arg(long)]
        format: Option<String>,
    },
    /// Show them in detail (a secret's data never; a config's, yes).
    Inspect {
        /// Names, IDs or unique ID prefixes.
        #[arg(required = true)]
        names: Vec<String>,
        /// Human-readable text instead of JSON.
        #[arg(long)]
        pretty: bool,
    },
    /// Change labels; nothing else can change (a new value is a new one, rotated in with
    /// `service update --secret-rm OLD --secret-add source=NEW,target=…`).
    Update {
        /// Add or replace a label key=value (repeatable).
        #[arg(long)]
        label_add: Vec<String>,
        /// Remove a label by key (repeatable).
        #[arg(long)]
        label_rm: Vec<String>,
        name: String,
    },
    /// Remove them; refused for one a service uses.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// Reads the data of `create` from `file` (`-`: standard input), at most one byte more than
/// `kind` allows, so that an oversized file is refused without reading it all.
pub fn read_data(kind: FileKind, file: &str, input: &mut dyn Read) -> anyhow::Result<Vec<u8>> {
    let max = kind.bytes_max();
    let mut data = Vec::new();
    let limit = max as u64 + 1;
    if file == "-" {
        input
            .take(limit)
            .read_to_end(&mut data)
            .context("cannot read standard input")?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(limit).read_to_end(&mut data))
            .with_context(|| format!("cannot read {file}"))?;
    }
    if data.len() > max {
        bail!(
            "{} data is over the limit of {max} bytes (under {} KiB)",
            kind.as_str(),
            (max + 1) / 1024
        );
    }
    validate_secret_data(kind, &data).map_err(anyhow::Error::msg)?;
    Ok(data)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Standard base64 with padding, as Docker's JSON carries a config's `Data`.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Docker's `inspect` document: metadata, and a config's data in base64.
pub fn json_doc(d: &SecretDoc) -> Value {
    let mut spec = json!({ "Name": d.name, "Labels": d.labels });
    if let Some(data) = &d.data {
        spec["Data"] = json!(base64(data));
    }
    json!({
        "ID": d.id,
        "Version": { "Index": d.version },
        "CreatedAt": rfc3339(d.created_ms),
        "UpdatedAt": rfc3339(d.updated_ms),
        "Spec": spec,
    })
}

/// `inspect --pretty`, after Docker's layout; a config's data as text at the end.
pub fn pretty(d: &SecretDoc) -> String {
    let mut o = format!("ID:\t\t{}\nName:\t\t{}\n", d.id, d.name);
    if !d.labels.is_empty() {
        o += "Labels:\n";
        for (k, v) in &d.labels {
            o += &if v.is_empty() {
                format!(" - {k}\n")
            } else {
                format!(" - {k}={v}\n")
            };
        }
    }
    o += &format!("Created at:\t{}\n", rfc3339(d.created_ms));
    o += &format!("Updated at:\t{}\n", rfc3339(d.updated_ms));
    if let Some(data) = &d.data {
        o += "Data:\n";
        o += &String::from_utf8_lossy(data);
        if !data.ends_with(b"\n") {
            o.push('\n');
        }
    }
    o
}

/// The `ls` table (ID NAME CREATED UPDATED) or, with `json`, one object per line.
pub fn listing(docs: &[SecretDoc], now_ms: u64, json: bool) -> String {
    let ago = |ms: u64| format!("{} ago", human_duration(now_ms.saturating_sub(ms)));
    if json {
        let mut out = String::new();
        for d in docs {
            let labels: Vec<String> = d.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let row = json!({
                "ID": d.id,
                "Name": d.name,
                "CreatedAt": ago(d.created_ms),
                "UpdatedAt": ago(d.updated_ms),
                "Labels": labels.join(","),
            });
            out += &row.to_string();
            out.push('\n');
        }
        return out;
    }
    let cells: Vec<Vec<String>> = docs
        .iter()
        .map(|d| {
            vec![
                d.id.chars().take(25).collect(),
                d.name.clone(),
                ago(d.created_ms),
                ago(d.updated_ms),
            ]
        })
        .collect();
    table(&["ID", "NAME", "CREATED", "UPDATED"], &cells)
}

async fn docs(client: &Client, req: ControlRequest) -> anyhow::Result<Vec<SecretDoc>> {
    match client.call(req).await? {
        ControlResponse::Secrets(d) => Ok(d),
        other => bail!("unexpected answer from the node: {other:?}"),
    }
}

pub async fn run(
    kind: FileKind,
    cmd: FileCmd,
    client: &Client,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    match cmd {
        FileCmd::Create { name, file, labels } => {
            let data = read_data(kind, &file, &mut std::io::stdin())?;
            let req = ControlRequest::SecretCreate {
                kind,
                name,
                labels: labels.iter().map(|l| parse_label(l)).collect(),
                data: SecretBytes::new(data),
            };
            match client.call(req).await? {
                ControlResponse::Done(id) => writeln!(out, "{id}")?,
                other => bail!("unexpected answer from the node: {other:?}"),
            }
        }
        FileCmd::Ls { quiet, format } => {
            if let Some(f) = format.as_deref().filter(|f| *f != "json") {
                bail!("unknown --format {f:?}: only json is supported");
            }
            let docs = docs(client, ControlRequest::SecretLs { kind }).await?;
            if quiet {
                for d in docs {
                    writeln!(out, "{}", d.id)?;
                }
            } else {
                write!(out, "{}", listing(&docs, now_ms(), format.is_some()))?;
            }
        }
        FileCmd::Inspect { names, pretty } => {
            let docs = docs(client, ControlRequest::SecretInspect { kind, names }).await?;
            if pretty {
                for (i, d) in docs.iter().enumerate() {
                    if i > 0 {
                        writeln!(out)?;
                    }
                    write!(out, "{}", self::pretty(d))?;
                }
            } else {
                let json: Vec<Value> = docs.iter().map(json_doc).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
            }
        }
        FileCmd::Update {
            label_add,
            label_rm,
            name,
        } => {
            let req = ControlRequest::SecretUpdate {
                kind,
                name,
                label_add: label_add.iter().map(|l| parse_label(l)).collect(),
                label_rm,
            };
            match client.call(req).await? {
                ControlResponse::Done(id) => writeln!(out, "{id}")?,
                other => bail!("unexpected answer from the node: {other:?}"),
            }
        }
        FileCmd::Rm { names } => {
            let mut failed = Vec::new();
            for name in names {
                let req = ControlRequest::SecretRm { kind, name };
                match client.call(req).await {
                    Ok(ControlResponse::Done(name)) => writeln!(out, "{name}")?,
                    Ok(other) => failed.push(format!("unexpected answer from the node: {other:?}")),
                    Err(e) => failed.push(format!("{e:#}")),
                }
            }
            if !failed.is_empty() {
                bail!("{}", failed.join("\n"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(kind: FileKind, data: Option<&[u8]>) -> SecretDoc {
        SecretDoc {
            id: "abc".into(),
            kind,
            name: "site.conf".into(),
            labels: [("env".to_string(), "prod".to_string())].into(),
            version: 7,
            created_ms: 1_700_000_000_123,
            updated_ms: 1_700_000_000_123,
            data: data.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
            ("my-secret-pw\n", "bXktc2VjcmV0LXB3Cg=="),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc, "{raw:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn inspect_shows_a_configs_data_and_nothing_of_a_secrets() {
        let c = json_doc(&doc(FileKind::Config, Some(b"listen 80\n")));
        assert_eq!(c["Spec"]["Data"], "bGlzdGVuIDgwCg==");
        assert_eq!(c["Version"]["Index"], 7);
        assert_eq!(c["CreatedAt"], "2023-11-14T22:13:20.123Z");
        assert_eq!(c["Spec"]["Labels"]["env"], "prod");
        let s = json_doc(&doc(FileKind::Secret, None));
        assert!(s["Spec"].get("Data").is_none(), "{s}");
        let p = pretty(&doc(FileKind::Config, Some(b"listen 80")));
        assert!(
            p.contains("Name:\t\tsite.conf\nLabels:\n - env=prod\n"),
            "{p}"
        );
        assert!(p.ends_with("Data:\nlisten 80\n"), "{p}");
        assert!(!pretty(&doc(FileKind::Secret, None)).contains("Data:"));
    }

    #[test]
    fn ls_prints_dockers_columns_and_json_keys() {
        let d = doc(FileKind::Secret, None);
        let t = listing(std::slice::from_ref(&d), d.created_ms + 5_000, false);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("ID ") && lines[0].contains(" NAME "),
            "{t}"
        );
        assert!(
            lines[0].contains(" CREATED ") && lines[0].ends_with(" UPDATED"),
            "{t}"
        );
        assert!(lines[1].contains("site.conf") && lines[1].contains("5 seconds ago"));
        let j: Value = serde_json::from_str(listing(&[d], 0, true).trim()).unwrap();
        assert_eq!(j["Name"], "site.conf");
        assert_eq!(j["Labels"], "env=prod");
    }

    #[test]
    fn data_is_read_within_the_kinds_bound() {
        let big = vec![b'x'; FileKind::Secret.bytes_max() + 1];
        let e = read_data(FileKind::Secret, "-", &mut &big[..]).unwrap_err();
        assert!(format!("{e:#}").contains("over the limit"), "{e:#}");
        assert!(read_data(FileKind::Config, "-", &mut &big[..]).is_ok());
        let e = read_data(FileKind::Secret, "-", &mut &b""[..]).unwrap_err();
        assert!(format!("{e:#}").contains("must not be empty"), "{e:#}");
        let e = read_data(FileKind::Secret, "/nonexistent/pw", &mut &b""[..]).unwrap_err();
        assert!(
            format!("{e:#}").contains("cannot read /nonexistent/pw"),
            "{e:#}"
        );
        assert_eq!(
            read_data(FileKind::Secret, "-", &mut &b"pw\n"[..]).unwrap(),
            b"pw\n"
        );
    }
}
