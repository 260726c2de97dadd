//! The compose files of `tests/compose/`: real files from public projects (each names its
//! source in its first comment) and hand-made broken ones (`broken/`). Beside each `X.yml`,
//! `X.expect` says what must come of it, one line each:
//!
//! - `ok`: a plan with no warning;
//! - `warn: TEXT`: a plan, and a warning that contains TEXT (every warning must be listed);
//! - `error: TEXT`: refused, with an error whose text (file paths relative to
//!   `tests/compose/`) contains TEXT: the file, the line, the key and the message.
//!
//! The environment is fixed (only `HOME`), so the outcome does not depend on the machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::plan_files_with_env;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compose")
}

/// What one file gave, in the `.expect` file's words (each warning on one line).
fn outcome(file: &Path) -> Result<Vec<String>, String> {
    let env = BTreeMap::from([("HOME".to_string(), "/home/user".to_string())]);
    let root = format!("{}/", corpus_dir().display());
    match plan_files_with_env(&[file.to_path_buf()], "corpus", env) {
        Ok(plan) => Ok(plan
            .warnings
            .iter()
            .map(|w| {
                let lines: Vec<&str> = w.lines().filter(|l| !l.is_empty()).collect();
                lines.join(" ")
            })
            .collect()),
        Err(e) => Err(e.to_string().replace(&root, "")),
    }
}

fn check(file: &Path) -> Result<(), String> {
    let expect_path = file.with_extension("expect");
    let expect = std::fs::read_to_string(&expect_path)
        .map_err(|e| format!("{}: {e}", expect_path.display()))?;
    let lines: Vec<&str> = expect
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let got = outcome(file);
    let describe = |got: &Result<Vec<String>, String>| match got {
        Ok(w) if w.is_empty() => "ok".to_string(),
        Ok(w) => w
            .iter()
            .map(|w| format!("warn: {w}"))
            .collect::<Vec<_>>()
            .join(" | "),
        Err(e) => format!("error: {e}"),
    };
    let fail = || {
        format!(
            "{}: expected {lines:?}, got {}",
            file.display(),
            describe(&got)
        )
    };
    match (&got, lines.as_slice()) {
        (Ok(w), ["ok"]) if w.is_empty() => Ok(()),
        (Err(e), [one]) => match one.strip_prefix("error: ") {
            Some(want) if e.contains(want) => Ok(()),
            _ => Err(fail()),
        },
        (Ok(w), wants) if !wants.is_empty() && wants.len() == w.len() => {
            for want in wants {
                let Some(text) = want.strip_prefix("warn: ") else {
                    return Err(fail());
                };
                if !w.iter().any(|x| x.contains(text)) {
                    return Err(fail());
                }
            }
            Ok(())
        }
        _ => Err(fail()),
    }
}

fn yml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn public_compose_files_parse_or_name_what_they_lack() {
    let files = yml_files(&corpus_dir());
    assert!(files.len() >= 15, "the corpus has {} files", files.len());
    let failures: Vec<String> = files.iter().filter_map(|f| check(f).err()).collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn broken_files_are_refused_with_file_line_and_key() {
    let files = yml_files(&corpus_dir().join("broken"));
    assert!(files.len() >= 10, "{} broken files", files.len());
    let mut failures = Vec::new();
    for f in &files {
        match outcome(f) {
            Ok(_) => failures.push(format!("{}: accepted", f.display())),
            Err(_) => {
                if let Err(e) = check(f) {
                    failures.push(e);
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
