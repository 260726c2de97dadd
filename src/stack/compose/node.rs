//! A compose file as a tree of YAML values, each with the file and line it came from, so that
//! interpolation, merging and conversion can name the place of anything they refuse.
//!
//! serde-saphyr reads the file (anchors, aliases and `<<` merge keys resolved, duplicate keys
//! refused); [`Spanned`] gives each value's line. Booleans are YAML 1.2's (`true`/`false`
//! only): compose files write `yes` and `on` as strings.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// One value of a compose file and where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Index of the file among those given (for error messages).
    pub file: usize,
    /// 1-based line (0: made by the loader, not read from a file).
    pub line: u32,
    pub v: Value,
}

/// A map key and its line.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub line: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// In the file's order; keys are unique (the parser refuses duplicates).
    Map(Vec<(Key, Node)>),
}

impl Node {
    pub fn new(file: usize, line: u32, v: Value) -> Node {
        Node { file, line, v }
    }

    /// Sets the file index on this node and everything under it.
    pub fn set_file(&mut self, file: usize) {
        self.file = file;
        match &mut self.v {
            Value::Seq(items) => items.iter_mut().for_each(|n| n.set_file(file)),
            Value::Map(entries) => entries.iter_mut().for_each(|(_, n)| n.set_file(file)),
            _ => {}
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.v {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, n)| n)
    }

    /// The scalar as text (numbers and booleans as YAML writes them); `None` for null,
    /// sequences and maps.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.v {
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Str(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// What kind of value this is, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self.v {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<Value>::deserialize(d)?;
        Ok(Node {
            file: 0,
            line: u32::try_from(s.referenced.line()).unwrap_or(u32::MAX),
            v: s.value,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i))
    }
    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        i64::try_from(u)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("integer {u} is too large")))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::Str(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = a.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = a.next_key::<Spanned<String>>()? {
            let n: Node = a.next_value()?;
            let line = u32::try_from(k.referenced.line()).unwrap_or(u32::MAX);
            entries.push((
                Key {
                    name: k.value,
                    line,
                },
                n,
            ));
        }
        Ok(Value::Map(entries))
    }
}

/// Parses one file's text; the error is the parser's message and line.
pub fn parse(text: &str) -> Result<Node, (u32, String)> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        legacy_octal_numbers: true,
        with_snippet: false,
    };
    serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|e| {
        let line = e
            .location()
            .map(|l| u32::try_from(l.line()).unwrap_or(u32::MAX))
            .unwrap_or(0);
        (line, clean_message(&e.to_string()))
    })
}

/// The parser's message without its `error: line N column M: ` prefix, its ` at line N,
/// column M` suffix and its advice about the parser's options (the caller puts the file and
/// line in front in its own form).
fn clean_message(text: &str) -> String {
    let first = text.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let msg = match first.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map_or(first, |(_, m)| m),
        None => first,
    };
    let msg = match msg.rfind(" at line ") {
        Some(at) => &msg[..at],
        None => msg,
    };
    let msg = msg.split(", set DuplicateKeyPolicy").next().unwrap_or(msg);
    msg.to_string()
}

/// Writes `node` as block YAML, keys in the order given (the caller sorts them).
pub fn to_yaml(node: &Node) -> String {
    let mut out = String::new();
    write_block(&mut out, node, 0);
    out
}

fn write_block(out: &mut String, node: &Node, indent: usize) {
    let pad = " ".repeat(indent);
    match &node.v {
        Value::Map(entries) if !entries.is_empty() => {
            for (k, v) in entries {
                out.push_str(&pad);
                out.push_str(&quote(&k.name));
                out.push(':');
                write_after_key(out, v, indent);
            }
        }
        Value::Seq(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                match &item.v {
                    Value::Map(e) if !e.is_empty() => {
                        // The first key on the dash's line, the rest under it.
                        let mut inner = String::new();
                        write_block(&mut inner, item, indent + 2);
                        out.push(' ');
                        out.push_str(inner.trim_start());
                    }
                    _ => write_after_key(out, item, indent),
                }
            }
        }
        _ => {
            out.push_str(&pad);
            out.push_str(&inline(node));
            out.push('\n');
        }
    }
}

/// Writes `v` after a key's colon or a list's dash: a non-empty block on the lines under it,
/// anything else inline on the same line.
fn write_after_key(out: &mut String, v: &Node, indent: usize) {
    match &v.v {
        Value::Map(e) if !e.is_empty() => {
            out.push('\n');
            write_block(out, v, indent + 2);
        }
        Value::Seq(s) if !s.is_empty() => {
            out.push('\n');
            write_block(out, v, indent + 2);
        }
        _ => {
            out.push(' ');
            out.push_str(&inline(v));
            out.push('\n');
        }
    }
}

fn inline(node: &Node) -> String {
    match &node.v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => {
            let s = f.to_string();
            if s.contains('.') || s.contains('e') || !f.is_finite() {
                s
            } else {
                format!("{s}.0")
            }
        }
        Value::Str(s) => quote(s),
        Value::Seq(_) => "[]".into(),
        Value::Map(_) => "{}".into(),
    }
}

/// `s` as a YAML scalar: plain when it reads back as the same string, double-quoted
/// otherwise.
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && !s.starts_with(|c: char| " -?:,[]{}#&*!|>'\"%@`~".contains(c))
        && !s.ends_with(' ')
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':')
        && !s.chars().any(|c| c.is_control())
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | ".inf" | ".nan"
        )
        && s.parse::<f64>().is_err()
        // `80:80` is a number to YAML 1.1 readers (base 60): quoted, as people write it.
        && !(s.starts_with(|c: char| c.is_ascii_digit()) && s.contains(':'))
        && !s.starts_with("0x")
        && !s.starts_with("0o");
    if plain {
        return s.to_string();
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            '\r' => q.push_str("\\r"),
            c if c.is_control() => q.push_str(&format!("\\u{:04x}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_lines_and_yaml_1_2_booleans() {
        let n = parse("x-a: &a\n  n: 5\nservices:\n  web:\n    <<: *a\n    b: yes\n    c: true\n")
            .unwrap();
        let web = n.get("services").unwrap().get("web").unwrap();
        assert_eq!(web.get("b").unwrap().v, Value::Str("yes".into()));
        assert_eq!(web.get("c").unwrap().v, Value::Bool(true));
        assert_eq!(web.get("n").unwrap().v, Value::Int(5));
        assert_eq!(web.get("c").unwrap().line, 7);
        let keys: Vec<_> = n.as_map().unwrap().iter().map(|(k, _)| k.line).collect();
        assert_eq!(keys, [1, 3]);
    }

    #[test]
    fn bad_yaml_and_duplicate_keys_name_the_line() {
        let (line, msg) = parse("services:\n  web:\n    image: [\n").unwrap_err();
        assert_eq!(line, 3, "{msg}");
        let (line, msg) = parse("services:\n  web: {}\n  web: {}\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(msg.contains("duplicate"), "{msg}");
    }

    #[test]
    fn yaml_written_reads_back_the_same() {
        let text = "a:\n  b: \"yes\"\n  c:\n  - x\n  - k: 1\n    l: \"2\"\n  d: \"a: b\"\n  e: []\n  f: 1.5\n";
        let n = parse(text).unwrap();
        let out = to_yaml(&n);
        let mut back = parse(&out).unwrap();
        let mut orig = n.clone();
        fn strip(n: &mut Node) {
            n.line = 0;
            match &mut n.v {
                Value::Seq(s) => s.iter_mut().for_each(strip),
                Value::Map(m) => m.iter_mut().for_each(|(k, v)| {
                    k.line = 0;
                    strip(v)
                }),
                _ => {}
            }
        }
        strip(&mut back);
        strip(&mut orig);
        assert_eq!(back, orig, "{out}");
    }
}
