//! The merged file → [`StackPlan`]: top-level keys checked, networks, volumes, secrets and
//! configs named and labelled, every service converted ([`super::service`]), and the services
//! ordered so that each comes after what it depends on.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use swarm_actors::model::FileKind;

use super::node::{Key, Node, Value};
use super::{ComposeError, Loaded, SERVICES_MAX};
use crate::control::proto::NetworkCreate;
use crate::stack::plan::{NAMESPACE_LABEL, StackFile, StackNetwork, StackPlan, StackVolume};

/// Largest secret or config file read, in bytes (as `secret create` takes).
pub const FILE_DATA_BYTES_MAX: u64 = 500 * 1024;

const TOP_LEVEL_KEYS: &[&str] = &[
    "version", "name", "services", "networks", "volumes", "secrets", "configs",
];

/// A top-level object's full name and whether it is external.
#[derive(Clone, Debug)]
pub struct Named {
    pub full: String,
    pub external: bool,
}

/// What the services may refer to, by the name the file uses.
pub struct Scope<'a> {
    pub loaded: &'a Loaded,
    pub namespace: &'a str,
    pub networks: BTreeMap<String, Named>,
    pub volumes: BTreeMap<String, Named>,
    pub secrets: BTreeMap<String, Named>,
    pub configs: BTreeMap<String, Named>,
    /// Every service of the file, by name.
    pub services: BTreeSet<String>,
}

impl Scope<'_> {
    /// `<stack>_<name>`.
    pub fn scoped(&self, name: &str) -> String {
        format!("{}_{name}", self.namespace)
    }
}

/// The entries of a mapping (or `None` when absent or null); anything else is refused.
pub fn entries<'a>(
    l: &Loaded,
    n: Option<&'a Node>,
    key: &str,
) -> Result<&'a [(Key, Node)], ComposeError> {
    match n.map(|n| (n, &n.v)) {
        None | Some((_, Value::Null)) => Ok(&[]),
        Some((_, Value::Map(m))) => Ok(m),
        Some((n, _)) => Err(l.err(n, key, format!("must be a mapping, found {}", n.kind()))),
    }
}

/// Refuses keys of `n` not in `allowed` (`x-*` extensions always pass), as Docker's schema
/// does ("additional property").
pub fn check_keys(l: &Loaded, n: &Node, path: &str, allowed: &[&str]) -> Result<(), ComposeError> {
    let Value::Map(m) = &n.v else {
        return Err(l.err(n, path, format!("must be a mapping, found {}", n.kind())));
    };
    for (k, _) in m {
        if !k.name.starts_with("x-") && !allowed.contains(&k.name.as_str()) {
            let at = if path.is_empty() {
                k.name.clone()
            } else {
                format!("{path}.{}", k.name)
            };
            return Err(l.err_at(
                n.file,
                k.line,
                &at,
                format!("additional property {} is not allowed", k.name),
            ));
        }
    }
    Ok(())
}

/// A scalar as text (numbers and booleans as written); anything else is refused.
pub fn text(l: &Loaded, n: &Node, key: &str) -> Result<String, ComposeError> {
    n.scalar_text()
        .ok_or_else(|| l.err(n, key, format!("must be a string, found {}", n.kind())))
}

pub fn boolean(l: &Loaded, n: &Node, key: &str) -> Result<bool, ComposeError> {
    match &n.v {
        Value::Bool(b) => Ok(*b),
        Value::Str(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::Str(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(l.err(n, key, format!("must be a boolean, found {}", n.kind()))),
    }
}

/// `external: true`, or the old `external: {name: x}`; `(external, its name)`.
fn external(l: &Loaded, n: &Node, key: &str) -> Result<(bool, Option<String>), ComposeError> {
    match n.get("external") {
        None => Ok((false, None)),
        Some(e) => match &e.v {
            Value::Map(_) => {
                check_keys(l, e, &format!("{key}.external"), &["name"])?;
                let name = e
                    .get("name")
                    .map(|x| text(l, x, &format!("{key}.external.name")))
                    .transpose()?;
                Ok((true, name))
            }
            _ => Ok((boolean(l, e, &format!("{key}.external"))?, None)),
        },
    }
}

/// `labels:` as a map or a `key=value` list.
pub fn label_map(
    l: &Loaded,
    n: Option<&Node>,
    key: &str,
) -> Result<BTreeMap<String, String>, ComposeError> {
    let mut out = BTreeMap::new();
    match n.map(|n| (n, &n.v)) {
        None | Some((_, Value::Null)) => {}
        Some((_, Value::Map(m))) => {
            for (k, v) in m {
                let value = match v.v {
                    Value::Null => String::new(),
                    _ => text(l, v, &format!("{key}.{}", k.name))?,
                };
                out.insert(k.name.clone(), value);
            }
        }
        Some((_, Value::Seq(items))) => {
            for (i, item) in items.iter().enumerate() {
                let t = text(l, item, &format!("{key}[{i}]"))?;
                let (k, v) = t.split_once('=').unwrap_or((&t, ""));
                out.insert(k.to_string(), v.to_string());
            }
        }
        Some((n, _)) => {
            return Err(l.err(
                n,
                key,
                format!("must be a mapping or a list, found {}", n.kind()),
            ));
        }
    }
    Ok(out)
}

pub fn convert(l: &Loaded, namespace: &str) -> Result<StackPlan, ComposeError> {
    let root = &l.root;
    check_keys(l, root, "", TOP_LEVEL_KEYS)?;
    let mut plan = StackPlan {
        namespace: namespace.to_string(),
        ..StackPlan::default()
    };
    let mut scope = Scope {
        loaded: l,
        namespace,
        networks: BTreeMap::new(),
        volumes: BTreeMap::new(),
        secrets: BTreeMap::new(),
        configs: BTreeMap::new(),
        services: BTreeSet::new(),
    };
    let services = entries(l, root.get("services"), "services")?;
    if services.len() > SERVICES_MAX {
        return Err(l.err(
            root.get("services").unwrap_or(root),
            "services",
            format!(
                "{} services: a stack has at most {SERVICES_MAX}",
                services.len()
            ),
        ));
    }
    scope.services = services.iter().map(|(k, _)| k.name.clone()).collect();

    for (k, n) in entries(l, root.get("networks"), "networks")? {
        let key = format!("networks.{}", k.name);
        let net = network(&scope, &k.name, n, &key)?;
        scope.networks.insert(
            k.name.clone(),
            Named {
                full: net.create.name.clone(),
                external: net.external,
            },
        );
        plan.networks.push(net);
    }
    for (k, n) in entries(l, root.get("volumes"), "volumes")? {
        let key = format!("volumes.{}", k.name);
        let v = volume(&scope, &k.name, n, &key)?;
        scope.volumes.insert(
            k.name.clone(),
            Named {
                full: v.name.clone(),
                external: v.external,
            },
        );
        plan.volumes.push(v);
    }
    for (kind, top) in [(FileKind::Secret, "secrets"), (FileKind::Config, "configs")] {
        for (k, n) in entries(l, root.get(top), top)? {
            let key = format!("{top}.{}", k.name);
            let f = file_object(&scope, kind, &k.name, n, &key)?;
            let named = Named {
                full: f.name.clone(),
                external: f.external,
            };
            match kind {
                FileKind::Secret => {
                    scope.secrets.insert(k.name.clone(), named);
                    plan.secrets.push(f);
                }
                FileKind::Config => {
                    scope.configs.insert(k.name.clone(), named);
                    plan.configs.push(f);
                }
            }
        }
    }

    let mut unsupported = BTreeSet::new();
    let mut deprecated = BTreeMap::new();
    let mut converted = Vec::new();
    let mut uses_default = false;
    for (k, n) in services {
        let out = super::service::convert_service(&scope, &k.name, k.line, n)?;
        unsupported.extend(out.unsupported);
        deprecated.extend(out.deprecated);
        uses_default |= out.uses_default_network;
        converted.push((k.name.clone(), out.service));
    }
    if uses_default && !scope.networks.contains_key("default") {
        plan.networks.insert(
            0,
            StackNetwork {
                external: false,
                create: NetworkCreate {
                    name: scope.scoped("default"),
                    driver: "overlay".into(),
                    subnet: None,
                    attachable: false,
                    internal: false,
                    labels: vec![(NAMESPACE_LABEL.to_string(), namespace.to_string())],
                },
            },
        );
    }
    if !unsupported.is_empty() {
        let names: Vec<&str> = unsupported.iter().map(String::as_str).collect();
        plan.warnings.push(format!(
            "Ignoring unsupported options: {}",
            names.join(", ")
        ));
    }
    if !deprecated.is_empty() {
        let lines: Vec<String> = deprecated
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        plan.warnings.push(format!(
            "Ignoring deprecated options:\n\n{}",
            lines.join("\n\n")
        ));
    }
    plan.services = order_by_dependencies(l, services, converted)?;
    Ok(plan)
}

/// The services, each after the services it depends on (otherwise in the file's order); a
/// cycle is refused naming it.
fn order_by_dependencies(
    l: &Loaded,
    nodes: &[(Key, Node)],
    converted: Vec<(String, crate::stack::plan::StackService)>,
) -> Result<Vec<crate::stack::plan::StackService>, ComposeError> {
    let deps: BTreeMap<String, Vec<String>> = nodes
        .iter()
        .map(|(k, n)| {
            let names = match n.get("depends_on").map(|d| &d.v) {
                Some(Value::Seq(items)) => items.iter().filter_map(Node::scalar_text).collect(),
                Some(Value::Map(m)) => m.iter().map(|(k, _)| k.name.clone()).collect(),
                _ => Vec::new(),
            };
            (k.name.clone(), names)
        })
        .collect();
    // 0 = not seen, 1 = on the current path, 2 = placed.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    fn visit<'a>(
        name: &'a str,
        deps: &'a BTreeMap<String, Vec<String>>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
        order: &mut Vec<String>,
    ) -> Result<(), Vec<String>> {
        match state.get(name) {
            Some(2) => return Ok(()),
            Some(1) => {
                let start = path.iter().position(|p| *p == name).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(name.to_string());
                return Err(cycle);
            }
            _ => {}
        }
        state.insert(name, 1);
        path.push(name);
        for d in deps.get(name).into_iter().flatten() {
            visit(d, deps, state, path, order)?;
        }
        path.pop();
        state.insert(name, 2);
        order.push(name.to_string());
        Ok(())
    }
    for (k, n) in nodes {
        let mut path = Vec::new();
        visit(&k.name, &deps, &mut state, &mut path, &mut order).map_err(|cycle| {
            let at = n.get("depends_on").unwrap_or(n);
            l.err(
                at,
                &format!("services.{}.depends_on", cycle[0]),
                format!("dependency cycle: {}", cycle.join(" -> ")),
            )
        })?;
    }
    let mut by_name: BTreeMap<String, crate::stack::plan::StackService> =
        converted.into_iter().collect();
    Ok(order.iter().filter_map(|n| by_name.remove(n)).collect())
}

/// A top-level network's or volume's body, its keys checked against `allowed`: `null` (a
/// bare `web:`) stands for an empty mapping.
fn object_body<'a>(
    l: &Loaded,
    n: &'a Node,
    key: &str,
    allowed: &[&str],
) -> Result<Cow<'a, Node>, ComposeError> {
    let body = if n.v == Value::Null {
        Cow::Owned(Node::new(n.file, n.line, Value::Map(Vec::new())))
    } else {
        Cow::Borrowed(n)
    };
    check_keys(l, &body, key, allowed)?;
    Ok(body)
}

/// A top-level object's `external` and its full name: an external one is found by its own
/// name (`external.name`, then `name`, then its key); another is made under `name`, or under
/// its key scoped to the stack.
fn object_name(s: &Scope, name: &str, n: &Node, key: &str) -> Result<(bool, String), ComposeError> {
    let l = s.loaded;
    let (ext, ext_name) = external(l, n, key)?;
    let given = n
        .get("name")
        .map(|x| text(l, x, &format!("{key}.name")))
        .transpose()?;
    let full = if ext {
        ext_name.or(given).unwrap_or_else(|| name.to_string())
    } else {
        given.unwrap_or_else(|| s.scoped(name))
    };
    Ok((ext, full))
}

/// A top-level object's `labels`, always checked: none for an external one (the stack does
/// not make it), else the given ones and the stack's namespace label.
fn object_labels(
    s: &Scope,
    n: &Node,
    key: &str,
    ext: bool,
) -> Result<BTreeMap<String, String>, ComposeError> {
    let mut labels = label_map(s.loaded, n.get("labels"), &format!("{key}.labels"))?;
    if ext {
        labels.clear();
    } else {
        labels.insert(NAMESPACE_LABEL.into(), s.namespace.into());
    }
    Ok(labels)
}

fn network(s: &Scope, name: &str, n: &Node, key: &str) -> Result<StackNetwork, ComposeError> {
    let l = s.loaded;
    let body = object_body(
        l,
        n,
        key,
        &[
            "driver",
            "driver_opts",
            "attachable",
            "internal",
            "external",
            "name",
            "labels",
            "ipam",
            "enable_ipv6",
        ],
    )?;
    let n = &*body;
    let (ext, full) = object_name(s, name, n, key)?;
    if let Some(d) = n.get("driver") {
        let d = text(l, d, &format!("{key}.driver"))?;
        if d != "overlay" && !ext {
            return Err(l.err(
                n.get("driver").unwrap_or(n),
                &format!("{key}.driver"),
                format!("driver {d:?} is not supported: a stack's networks are overlay networks"),
            ));
        }
    }
    let labels = object_labels(s, n, key, ext)?;
    let mut subnet = None;
    if let Some(ipam) = n.get("ipam") {
        check_keys(
            l,
            ipam,
            &format!("{key}.ipam"),
            &["driver", "config", "options"],
        )?;
        if let Some(Value::Seq(configs)) = ipam.get("config").map(|c| &c.v)
            && let Some(sn) = configs.first().and_then(|first| first.get("subnet"))
        {
            subnet = Some(text(l, sn, &format!("{key}.ipam.config[0].subnet"))?);
        }
    }
    let attachable = n
        .get("attachable")
        .map(|x| boolean(l, x, &format!("{key}.attachable")))
        .transpose()?
        .unwrap_or(false);
    let internal = n
        .get("internal")
        .map(|x| boolean(l, x, &format!("{key}.internal")))
        .transpose()?
        .unwrap_or(false);
    Ok(StackNetwork {
        external: ext,
        create: NetworkCreate {
            name: full,
            driver: "overlay".into(),
            subnet,
            attachable,
            internal,
            labels: labels.into_iter().collect(),
        },
    })
}

fn volume(s: &Scope, name: &str, n: &Node, key: &str) -> Result<StackVolume, ComposeError> {
    let l = s.loaded;
    let body = object_body(
        l,
        n,
        key,
        &["driver", "driver_opts", "external", "name", "labels"],
    )?;
    let n = &*body;
    if let Some(d) = n.get("driver") {
        let d = text(l, d, &format!("{key}.driver"))?;
        if d != "local" {
            return Err(l.err(
                n.get("driver").unwrap_or(n),
                &format!("{key}.driver"),
                format!("volume driver {d:?} is not supported: only local volumes"),
            ));
        }
    }
    let (ext, full) = object_name(s, name, n, key)?;
    let labels = object_labels(s, n, key, ext)?;
    Ok(StackVolume {
        name: full,
        external: ext,
        labels,
    })
}

fn file_object(
    s: &Scope,
    kind: FileKind,
    name: &str,
    n: &Node,
    key: &str,
) -> Result<StackFile, ComposeError> {
    let l = s.loaded;
    check_keys(
        l,
        n,
        key,
        &[
            "file",
            "external",
            "name",
            "labels",
            "environment",
            "content",
            "driver",
            "driver_opts",
            "template_driver",
        ],
    )?;
    let (ext, full) = object_name(s, name, n, key)?;
    let labels = object_labels(s, n, key, ext)?;
    if ext {
        return Ok(StackFile {
            kind,
            name: full,
            external: true,
            data: None,
            labels,
        });
    }
    let data = if let Some(f) = n.get("file") {
        let fkey = format!("{key}.file");
        let path = l.resolve(&text(l, f, &fkey)?);
        let meta = std::fs::metadata(&path)
            .map_err(|e| l.err(f, &fkey, format!("{}: {e}", path.display())))?;
        if meta.len() > FILE_DATA_BYTES_MAX {
            return Err(l.err(
                f,
                &fkey,
                format!(
                    "{}: {} bytes, at most {FILE_DATA_BYTES_MAX}",
                    path.display(),
                    meta.len()
                ),
            ));
        }
        std::fs::read(&path).map_err(|e| l.err(f, &fkey, format!("{}: {e}", path.display())))?
    } else if let Some(e) = n.get("environment") {
        let ekey = format!("{key}.environment");
        let var = text(l, e, &ekey)?;
        l.vars
            .get(&var)
            .ok_or_else(|| l.err(e, &ekey, format!("variable {var} is not set")))?
            .as_bytes()
            .to_vec()
    } else if let Some(c) = n.get("content") {
        text(l, c, &format!("{key}.content"))?.into_bytes()
    } else {
        return Err(l.err(
            n,
            key,
            format!(
                "a {} needs file, environment or content, or external: true",
                kind.as_str()
            ),
        ));
    };
    Ok(StackFile {
        kind,
        name: full,
        external: false,
        data: Some(data),
        labels,
    })
}
