//! Compose files → [`StackPlan`]: what `docker stack deploy` reads (format 3.x and the
//! compose specification's swarm keys).
//!
//! ```text
//!  files ──read (≤ FILE_BYTES_MAX)──▶ node::parse ──▶ interpolate ──▶ merge (in order)
//!        ──▶ convert: check keys, map onto ServiceSpec, name and label ──▶ StackPlan
//! ```
//!
//! Every file is read, interpolated, merged and converted before anything is made, so a
//! broken file is refused with its file, line and key and changes nothing. Each value keeps
//! the file and line it came from through the merge ([`node::Node`]).

mod convert;
mod interpolate;
mod merge;
mod node;
mod service;

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::plan::StackPlan;
use interpolate::{Vars, interpolate_node, parse_dotenv};
use node::{Key, Node, Value};

/// Largest compose file read, in bytes.
pub const FILE_BYTES_MAX: u64 = 4 << 20;
/// Most services one stack has.
pub const SERVICES_MAX: usize = 256;
/// Most compose files merged into one stack (`-c` given more often is refused).
pub const FILES_MAX: usize = 16;
/// Longest stack name (a stack's objects are named `<stack>_<name>`, and names are at most
/// 63 characters).
pub const STACK_NAME_LEN_MAX: usize = 32;

/// Why a compose file was refused: the file, the line (0 when the problem has no one line),
/// the key (a dotted path, `services.web.ports[1]`), and what is wrong. Nothing was created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComposeError {
    pub file: String,
    pub line: u32,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ComposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ComposeError {}

/// The files, read, interpolated and merged, and what conversion needs to know about them.
pub(crate) struct Loaded {
    pub files: Vec<PathBuf>,
    /// The first file's folder: relative paths (binds, `file:`, `env_file`) start here.
    pub dir: PathBuf,
    pub vars: Vars,
    pub root: Node,
}

impl Loaded {
    /// An error at `node` (its file and line).
    pub fn err(&self, node: &Node, key: &str, message: impl Into<String>) -> ComposeError {
        self.err_at(node.file, node.line, key, message)
    }

    pub fn err_at(
        &self,
        file: usize,
        line: u32,
        key: &str,
        message: impl Into<String>,
    ) -> ComposeError {
        ComposeError {
            file: self
                .files
                .get(file)
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            line,
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// A relative path made absolute against the first file's folder (`~` is `$HOME`).
    pub fn resolve(&self, path: &str) -> PathBuf {
        if let Some(rest) = path.strip_prefix("~/")
            && let Some(home) = self.vars.get("HOME")
        {
            return Path::new(home).join(rest);
        }
        let p = Path::new(path);
        let joined = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        };
        normalize(&joined)
    }
}

/// `a/./b/../c` as `a/c`, without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

fn file_error(path: &Path, message: impl Into<String>) -> ComposeError {
    ComposeError {
        file: path.display().to_string(),
        line: 0,
        key: String::new(),
        message: message.into(),
    }
}

/// Reads, interpolates and merges `files` (environment first, then the `.env` beside the
/// first file).
pub(crate) fn load(
    files: &[PathBuf],
    env: BTreeMap<String, String>,
) -> Result<Loaded, ComposeError> {
    let Some(first) = files.first() else {
        return Err(ComposeError {
            file: String::new(),
            line: 0,
            key: String::new(),
            message: "no compose file given (-c FILE)".into(),
        });
    };
    if files.len() > FILES_MAX {
        return Err(file_error(
            first,
            format!("{} compose files given: at most {FILES_MAX}", files.len()),
        ));
    }
    let dir = match first.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let dotenv_path = dir.join(".env");
    let dotenv = match std::fs::metadata(&dotenv_path) {
        Ok(m) if m.is_file() => {
            if m.len() > interpolate::DOTENV_BYTES_MAX as u64 {
                return Err(file_error(
                    &dotenv_path,
                    format!(
                        "{} bytes: at most {}",
                        m.len(),
                        interpolate::DOTENV_BYTES_MAX
                    ),
                ));
            }
            let text = std::fs::read_to_string(&dotenv_path)
                .map_err(|e| file_error(&dotenv_path, e.to_string()))?;
            parse_dotenv(&text).map_err(|(line, msg)| ComposeError {
                file: dotenv_path.display().to_string(),
                line,
                key: String::new(),
                message: msg,
            })?
        }
        _ => BTreeMap::new(),
    };
    let vars = Vars { env, dotenv };
    let mut loaded = Loaded {
        files: files.to_vec(),
        dir,
        vars,
        root: Node::new(0, 0, Value::Map(Vec::new())),
    };
    let mut merged: Option<Node> = None;
    for (i, path) in files.iter().enumerate() {
        let meta = std::fs::metadata(path).map_err(|e| file_error(path, e.to_string()))?;
        if meta.len() > FILE_BYTES_MAX {
            return Err(file_error(
                path,
                format!(
                    "{} bytes: a compose file is at most {FILE_BYTES_MAX}",
                    meta.len()
                ),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e.to_string()))?;
        let mut node = parse_text(&loaded, i, &text)?;
        interpolate_node(&mut node, &loaded.vars, "")
            .map_err(|(line, key, msg)| loaded.err_at(i, line, &key, msg))?;
        merged = Some(match merged {
            None => node,
            Some(base) => merge::merge_files(base, node),
        });
    }
    loaded.root = merged.unwrap_or_else(|| Node::new(0, 0, Value::Map(Vec::new())));
    Ok(loaded)
}

/// One file's text as a tree; an empty file is an empty mapping, anything but a mapping at
/// the top is refused.
fn parse_text(loaded: &Loaded, file: usize, text: &str) -> Result<Node, ComposeError> {
    let mut node = if text.trim().is_empty() {
        Node::new(file, 0, Value::Map(Vec::new()))
    } else {
        node::parse(text).map_err(|(line, msg)| loaded.err_at(file, line, "", msg))?
    };
    node.set_file(file);
    match node.v {
        Value::Map(_) => Ok(node),
        Value::Null => Ok(Node::new(file, node.line, Value::Map(Vec::new()))),
        _ => Err(loaded.err(
            &node,
            "",
            format!("top-level object must be a mapping, found {}", node.kind()),
        )),
    }
}

fn process_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Docker's rule for a stack name: lowercase letters, digits, `_` and `-`, starting with a
/// letter or digit.
pub fn validate_stack_name(namespace: &str) -> Result<(), String> {
    let ok = namespace
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && namespace
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !ok {
        return Err(format!(
            "invalid stack name {namespace:?}: lowercase letters, digits, '_' and '-', starting with a letter or digit"
        ));
    }
    if namespace.len() > STACK_NAME_LEN_MAX {
        return Err(format!(
            "invalid stack name {namespace:?}: at most {STACK_NAME_LEN_MAX} characters"
        ));
    }
    Ok(())
}

/// The stack `namespace` as `files` describe it (merged in order), with the process
/// environment and the first file's `.env` for variables. Nothing is made: a refused file
/// changes nothing.
pub fn plan_files(files: &[PathBuf], namespace: &str) -> Result<StackPlan, ComposeError> {
    plan_files_with_env(files, namespace, process_env())
}

/// [`plan_files`] with the given environment in place of the process's.
pub fn plan_files_with_env(
    files: &[PathBuf],
    namespace: &str,
    env: BTreeMap<String, String>,
) -> Result<StackPlan, ComposeError> {
    validate_stack_name(namespace).map_err(|message| ComposeError {
        file: files
            .first()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        line: 0,
        key: String::new(),
        message,
    })?;
    let loaded = load(files, env)?;
    convert::convert(&loaded, namespace)
}

/// The merged, interpolated files as YAML, as `stack config` prints them: top-level keys in
/// Docker's order (version, services, networks, volumes, secrets, configs), the keys below
/// sorted. The files are checked as a deploy checks them.
pub fn config_text(files: &[PathBuf]) -> Result<String, ComposeError> {
    config_text_with_env(files, process_env())
}

/// [`config_text`] with the given environment in place of the process's.
pub fn config_text_with_env(
    files: &[PathBuf],
    env: BTreeMap<String, String>,
) -> Result<String, ComposeError> {
    let loaded = load(files, env)?;
    // The same checks as a deploy, under a name no one sees.
    convert::convert(&loaded, "config")?;
    let order = [
        "version", "services", "networks", "volumes", "secrets", "configs",
    ];
    let Value::Map(entries) = &loaded.root.v else {
        return Ok(String::new());
    };
    let mut top: Vec<(Key, Node)> = Vec::new();
    for name in order {
        if let Some((k, v)) = entries.iter().find(|(k, _)| k.name == name) {
            let mut v = v.clone();
            sort_keys(&mut v);
            top.push((k.clone(), v));
        }
    }
    Ok(node::to_yaml(&Node::new(0, 0, Value::Map(top))))
}

fn sort_keys(n: &mut Node) {
    match &mut n.v {
        Value::Map(m) => {
            m.sort_by(|a, b| a.0.name.cmp(&b.0.name));
            m.iter_mut().for_each(|(_, v)| sort_keys(v));
        }
        Value::Seq(s) => s.iter_mut().for_each(sort_keys),
        _ => {}
    }
}
