//! Several compose files merged in order, as compose does: maps merge key by key, scalars
//! are replaced, `command`, `entrypoint` and `healthcheck.test` are replaced whole, and the
//! lists that have a key merge by it (`ports` by their text or target, `volumes` by target,
//! `secrets`/`configs` by source); `environment`, `labels`, `networks` and `depends_on` merge
//! as maps whichever form each file writes them in; other lists are joined without repeats.

use super::node::{Key, Node, Value};

/// Merges `over` onto `base` (both whole files).
pub fn merge_files(base: Node, over: Node) -> Node {
    merge_map_with(base, over, &|key, b, o| match key {
        "services" => merge_map_with(b, o, &|_, b, o| merge_service(b, o)),
        "networks" | "volumes" | "secrets" | "configs" => {
            merge_map_with(b, o, &|_, b, o| merge_generic(b, o))
        }
        _ => o,
    })
}

/// Merges two maps: a key of both goes through `f`, the others are kept. Anything not a map
/// on either side: `over` wins.
fn merge_map_with(base: Node, over: Node, f: &dyn Fn(&str, Node, Node) -> Node) -> Node {
    let (Value::Map(mut b), Value::Map(o)) = (base.v.clone(), over.v.clone()) else {
        return over;
    };
    for (k, v) in o {
        if let Some(pos) = b.iter().position(|(bk, _)| bk.name == k.name) {
            let old = b[pos].1.clone();
            b[pos].1 = f(&k.name, old, v);
        } else {
            b.push((k, v));
        }
    }
    Node::new(base.file, base.line, Value::Map(b))
}

/// Maps merge recursively, anything else is replaced.
fn merge_generic(base: Node, over: Node) -> Node {
    merge_map_with(base, over, &|_, b, o| merge_generic(b, o))
}

fn merge_service(base: Node, over: Node) -> Node {
    merge_map_with(base, over, &|key, b, o| match key {
        "command" | "entrypoint" => o,
        "environment" | "labels" | "networks" | "depends_on" | "extra_hosts" | "sysctls" => {
            merge_generic(as_map(key, b), as_map(key, o))
        }
        "ports" => merge_keyed(b, o, port_key),
        "volumes" => merge_keyed(b, o, volume_key),
        "secrets" | "configs" => merge_keyed(b, o, source_key),
        "healthcheck" => merge_map_with(b, o, &|k, b, o| {
            if k == "test" { o } else { merge_generic(b, o) }
        }),
        "deploy" => merge_map_with(b, o, &|k, b, o| match k {
            "labels" => merge_generic(as_map(k, b), as_map(k, o)),
            _ => merge_sequences_or(b, o),
        }),
        _ => merge_sequences_or(b, o),
    })
}

/// Lists are joined without repeats, maps merged, scalars replaced.
fn merge_sequences_or(base: Node, over: Node) -> Node {
    match (&base.v, &over.v) {
        (Value::Seq(b), Value::Seq(o)) => {
            let mut out = b.clone();
            for item in o {
                if !out.iter().any(|x| same_value(x, item)) {
                    out.push(item.clone());
                }
            }
            Node::new(base.file, base.line, Value::Seq(out))
        }
        (Value::Map(_), Value::Map(_)) => {
            merge_map_with(base, over, &|_, b, o| merge_sequences_or(b, o))
        }
        _ => over,
    }
}

/// Equal values, whatever their places.
fn same_value(a: &Node, b: &Node) -> bool {
    match (&a.v, &b.v) {
        (Value::Seq(x), Value::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| k1.name == k2.name && same_value(v1, v2))
        }
        (x, y) => x == y,
    }
}

/// A list merged by a key: an entry of `over` replaces the entry of `base` with its key.
fn merge_keyed(base: Node, over: Node, key: fn(&Node) -> Option<String>) -> Node {
    let (Value::Seq(mut b), Value::Seq(o)) = (base.v.clone(), over.v.clone()) else {
        return over;
    };
    for item in o {
        let k = key(&item);
        match b.iter().position(|x| k.is_some() && key(x) == k) {
            Some(pos) => b[pos] = item,
            None => b.push(item),
        }
    }
    Node::new(base.file, base.line, Value::Seq(b))
}

fn port_key(n: &Node) -> Option<String> {
    match &n.v {
        Value::Map(_) => Some(format!(
            "{}:{}/{}",
            n.get("published")
                .and_then(Node::scalar_text)
                .unwrap_or_default(),
            n.get("target")
                .and_then(Node::scalar_text)
                .unwrap_or_default(),
            n.get("protocol")
                .and_then(Node::scalar_text)
                .unwrap_or_else(|| "tcp".into()),
        )),
        _ => n.scalar_text().map(|t| {
            if t.contains('/') {
                t
            } else {
                format!("{t}/tcp")
            }
        }),
    }
}

fn volume_key(n: &Node) -> Option<String> {
    match &n.v {
        Value::Map(_) => n.get("target").and_then(Node::scalar_text),
        _ => n.scalar_text().map(|t| {
            let parts: Vec<&str> = t.split(':').collect();
            match parts.len() {
                1 => parts[0].to_string(),
                _ => parts[1].to_string(),
            }
        }),
    }
}

fn source_key(n: &Node) -> Option<String> {
    match &n.v {
        Value::Map(_) => n.get("source").and_then(Node::scalar_text),
        _ => n.scalar_text(),
    }
}

/// A list form as the map form: `KEY=VALUE` entries for environment and labels, names
/// (with no settings) for networks, `service_started` for depends_on.
pub fn as_map(key: &str, n: Node) -> Node {
    let Value::Seq(items) = &n.v else {
        return n;
    };
    let mut entries: Vec<(Key, Node)> = Vec::new();
    for item in items {
        let Some(text) = item.scalar_text() else {
            // Not a list of scalars: left for the converter to refuse with its place.
            return n;
        };
        let (name, value) = match key {
            "environment" | "labels" | "extra_hosts" | "sysctls" => match text.split_once('=') {
                Some((k, v)) => (k.to_string(), Value::Str(v.to_string())),
                None if key == "extra_hosts" => match text.split_once(':') {
                    Some((k, v)) => (k.to_string(), Value::Str(v.to_string())),
                    None => (text, Value::Null),
                },
                None => (text, Value::Null),
            },
            "depends_on" => {
                let cond = Node::new(item.file, item.line, Value::Str("service_started".into()));
                let k = Key {
                    name: "condition".into(),
                    line: item.line,
                };
                (text, Value::Map(vec![(k, cond)]))
            }
            _ => (text, Value::Null),
        };
        entries.retain(|(k, _)| k.name != name);
        entries.push((
            Key {
                name,
                line: item.line,
            },
            Node::new(item.file, item.line, value),
        ));
    }
    Node::new(n.file, n.line, Value::Map(entries))
}

#[cfg(test)]
mod tests {
    use super::super::node::{parse, to_yaml};
    use super::*;

    fn merged(a: &str, b: &str) -> String {
        to_yaml(&merge_files(parse(a).unwrap(), parse(b).unwrap()))
    }

    #[test]
    fn maps_merge_scalars_and_commands_are_replaced() {
        let out = merged(
            "services:\n  web:\n    image: a\n    command: [x, y]\n    environment: [A=1, B=2]\n    deploy:\n      replicas: 1\n      labels: {l: 1}\n  db:\n    image: d\n",
            "services:\n  web:\n    image: b\n    command: [z]\n    environment:\n      B: 3\n      C: 4\n    deploy:\n      replicas: 2\n",
        );
        assert_eq!(
            out,
            "services:\n  web:\n    image: b\n    command:\n      - z\n    environment:\n      A: \"1\"\n      B: 3\n      C: 4\n    deploy:\n      replicas: 2\n      labels:\n        l: 1\n  db:\n    image: d\n"
        );
    }

    #[test]
    fn lists_merge_by_their_keys() {
        let out = merged(
            "services:\n  web:\n    ports: [\"80:80\", \"443:443\"]\n    volumes: [\"data:/data\", \"/tmp:/tmp\"]\n    secrets: [a, {source: b, target: x}]\n    networks: [front]\n    depends_on: [db]\n",
            "services:\n  web:\n    ports: [\"80:80\", \"8080:8080\"]\n    volumes: [\"other:/data:ro\"]\n    secrets: [{source: b, target: y}, c]\n    networks:\n      back:\n        aliases: [w]\n    depends_on:\n      cache:\n        condition: service_healthy\n",
        );
        let n = parse(&out).unwrap();
        let web = n.get("services").unwrap().get("web").unwrap();
        let texts = |k: &str| -> Vec<String> {
            match &web.get(k).unwrap().v {
                Value::Seq(s) => s.iter().map(|x| to_yaml(x).trim().to_string()).collect(),
                Value::Map(m) => m.iter().map(|(k, _)| k.name.clone()).collect(),
                _ => panic!(),
            }
        };
        assert_eq!(
            texts("ports"),
            ["\"80:80\"", "\"443:443\"", "\"8080:8080\""]
        );
        assert_eq!(texts("volumes"), ["other:/data:ro", "/tmp:/tmp"]);
        assert_eq!(texts("secrets"), ["a", "source: b\ntarget: \"y\"", "c"]);
        assert_eq!(texts("networks"), ["front", "back"]);
        assert_eq!(texts("depends_on"), ["db", "cache"]);
    }
}
