//! Variables in compose files: `${VAR}`, `$VAR`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}` and `$$` for a literal `$`,
//! in every string value (not in keys), as compose does. Values come from the process
//! environment, then from a `.env` file beside the first compose file: the environment wins.

use std::collections::BTreeMap;

use super::node::{Node, Value};

/// Longest `.env` file read, in bytes.
pub const DOTENV_BYTES_MAX: usize = 1 << 20;

/// Deepest nesting of `${…}` inside a default.
const NESTING_MAX: usize = 8;

/// Where variables come from: the environment first, then `.env`.
pub struct Vars {
    pub env: BTreeMap<String, String>,
    pub dotenv: BTreeMap<String, String>,
}

impl Vars {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .or_else(|| self.dotenv.get(name))
            .map(String::as_str)
    }
}

/// Parses a `.env` file: `KEY=VALUE` lines, `#` comments, blank lines, an optional
/// `export `, values in single quotes (kept as written) or double quotes (`\n`, `\"`, `\\`
/// unescaped). The error names the line.
pub fn parse_dotenv(text: &str) -> Result<BTreeMap<String, String>, (u32, String)> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((line_no, format!("{line:?}: expected KEY=VALUE")));
        };
        let key = key.trim();
        if !is_name(key) {
            return Err((line_no, format!("invalid variable name {key:?}")));
        }
        let value = value.trim();
        let value = if let Some(v) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            v.to_string()
        } else if let Some(v) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            let mut s = String::new();
            let mut chars = v.chars();
            while let Some(c) = chars.next() {
                match (c, chars.clone().next()) {
                    ('\\', Some('n')) => {
                        s.push('\n');
                        chars.next();
                    }
                    ('\\', Some(e @ ('"' | '\\'))) => {
                        s.push(e);
                        chars.next();
                    }
                    (c, _) => s.push(c),
                }
            }
            s
        } else {
            // An unquoted value ends at ` #` (a comment).
            value
                .split(" #")
                .next()
                .unwrap_or("")
                .trim_end()
                .to_string()
        };
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces the variables in `text`. The error says what is wrong (an unset required
/// variable with its message, or a malformed reference).
pub fn interpolate(text: &str, vars: &Vars) -> Result<String, String> {
    expand(text, vars, 0)
}

fn expand(text: &str, vars: &Vars, depth: usize) -> Result<String, String> {
    if depth > NESTING_MAX {
        return Err(format!("{text:?}: variables nested too deeply"));
    }
    let invalid = || {
        format!(
            "invalid interpolation format for {text:?}: you may need to escape any $ with another $"
        )
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body_and_rest) = after.strip_prefix('{') {
            // The matching brace, counting nested `${`.
            let mut level = 1usize;
            let mut end = None;
            let bytes = body_and_rest.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'$' if bytes.get(i + 1) == Some(&b'{') => {
                        level += 1;
                        i += 1;
                    }
                    b'}' => {
                        level -= 1;
                        if level == 0 {
                            end = Some(i);
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            let end = end.ok_or_else(invalid)?;
            let body = &body_and_rest[..end];
            out.push_str(&braced(body, vars, depth).map_err(|e| e.unwrap_or_else(invalid))?);
            rest = &body_and_rest[end + 1..];
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..len];
            if !is_name(name) {
                return Err(invalid());
            }
            out.push_str(vars.get(name).unwrap_or(""));
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of `${body}`. `Err(None)`: malformed (the caller words it).
fn braced(body: &str, vars: &Vars, depth: usize) -> Result<String, Option<String>> {
    let len = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let (name, op) = body.split_at(len);
    if !is_name(name) {
        return Err(None);
    }
    let value = vars.get(name);
    let set = value.is_some();
    let nonempty = value.is_some_and(|v| !v.is_empty());
    let sub = |t: &str| expand(t, vars, depth + 1).map_err(Some);
    let value = value.unwrap_or("").to_string();
    if op.is_empty() {
        return Ok(value);
    }
    let (cond, arg) = if let Some(a) = op.strip_prefix(':') {
        (true, a)
    } else {
        (false, op)
    };
    let present = if cond { nonempty } else { set };
    match arg.chars().next() {
        Some('-') => {
            if present {
                Ok(value)
            } else {
                sub(&arg[1..])
            }
        }
        Some('?') => {
            if present {
                Ok(value)
            } else {
                let why = sub(&arg[1..])?;
                Err(Some(format!(
                    "required variable {name} is missing a value: {why}"
                )))
            }
        }
        Some('+') => {
            if present {
                sub(&arg[1..])
            } else {
                Ok(String::new())
            }
        }
        _ => Err(None),
    }
}

/// Interpolates every string value under `node` (keys are left alone, as compose does).
/// `x-*` extension values are interpolated too, as compose does. The error carries the
/// node's line and the key path.
pub fn interpolate_node(
    node: &mut Node,
    vars: &Vars,
    path: &str,
) -> Result<(), (u32, String, String)> {
    match &mut node.v {
        Value::Str(s) => {
            if s.contains('$') {
                *s = interpolate(s, vars).map_err(|e| (node.line, path.to_string(), e))?;
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_node(item, vars, &format!("{path}[{i}]"))?;
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                let p = if path.is_empty() {
                    k.name.clone()
                } else {
                    format!("{path}.{}", k.name)
                };
                interpolate_node(v, vars, &p)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let env = [("SET", "env"), ("EMPTY", ""), ("BOTH", "from-env")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let dotenv = [("DOT", "dot"), ("BOTH", "from-dotenv")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Vars { env, dotenv }
    }

    #[test]
    fn every_form_expands_as_compose_does() {
        let v = vars();
        for (text, want) in [
            ("${SET}", "env"),
            ("$SET/x", "env/x"),
            ("a${SET}b", "aenvb"),
            ("${UNSET}", ""),
            ("$UNSET", ""),
            ("${UNSET:-def}", "def"),
            ("${EMPTY:-def}", "def"),
            ("${EMPTY-def}", ""),
            ("${UNSET-def}", "def"),
            ("${SET:-def}", "env"),
            ("${SET:+alt}", "alt"),
            ("${UNSET+alt}", ""),
            ("${EMPTY+alt}", "alt"),
            ("$$SET", "$SET"),
            ("$${SET}", "${SET}"),
            ("${UNSET:-${SET}}", "env"),
            ("${UNSET:-a-${DOT:-b}-c}", "a-dot-c"),
            ("${DOT}", "dot"),
            ("${BOTH}", "from-env"),
            ("no vars", "no vars"),
        ] {
            assert_eq!(interpolate(text, &v).as_deref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn required_and_malformed_references_are_refused() {
        let v = vars();
        let e = interpolate("${UNSET:?set UNSET please}", &v).unwrap_err();
        assert!(e.contains("UNSET") && e.contains("set UNSET please"), "{e}");
        let e = interpolate("${EMPTY:?needed}", &v).unwrap_err();
        assert!(e.contains("needed"), "{e}");
        assert_eq!(interpolate("${EMPTY?needed}", &v).as_deref(), Ok(""));
        assert!(interpolate("${UNSET?x}", &v).is_err());
        for bad in ["${", "${SET", "${}", "$ 5", "${SET!x}", "${1A}", "end$"] {
            let e = interpolate(bad, &v).unwrap_err();
            assert!(e.contains("invalid interpolation format"), "{bad}: {e}");
        }
    }

    #[test]
    fn dotenv_lines() {
        let d = parse_dotenv(
            "# comment\n\nA=1\nexport B = two words \nC='x $y'\nD=\"a\\nb\"\nE=v # note\nF=\n",
        )
        .unwrap();
        assert_eq!(d["A"], "1");
        assert_eq!(d["B"], "two words");
        assert_eq!(d["C"], "x $y");
        assert_eq!(d["D"], "a\nb");
        assert_eq!(d["E"], "v");
        assert_eq!(d["F"], "");
        assert_eq!(parse_dotenv("A=1\nnot a pair\n").unwrap_err().0, 2);
        assert_eq!(parse_dotenv("1A=x\n").unwrap_err().0, 1);
    }
}
