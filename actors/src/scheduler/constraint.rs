//! Placement constraints (`node.labels.env==prod`) and spread preferences
//! (`spread=node.labels.zone`): parsing, validation and matching against a [`NodeView`].
//!
//! The syntax is Docker's. `service create` calls [`Constraint::parse`] and
//! [`Preference::parse`] to refuse a bad spec before anything is stored; the scheduler and the
//! global orchestrator parse again when they run (parsing is cheap) and match with
//! [`Constraint::matches`]. As in SwarmKit, values compare without regard to case, label keys
//! with regard to it, and a missing label reads as the empty string (so `!=` matches it).

use std::fmt;

use super::NodeView;

/// Most bytes of one constraint or preference expression; longer input is refused.
pub const EXPRESSION_BYTES_MAX: usize = 512;

/// What a constraint or a preference looks at on a node.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum NodeField {
    Id,
    Hostname,
    Role,
    /// A label set by `node update --label-add`.
    NodeLabel(String),
    /// A label the node's own daemon was started with (`--label`).
    EngineLabel(String),
}

impl NodeField {
    /// Reads the field's value on `node`; `None` for a missing label.
    pub fn value<'a>(&self, node: &'a NodeView) -> Option<std::borrow::Cow<'a, str>> {
        use std::borrow::Cow;
        match self {
            NodeField::Id => Some(Cow::Owned(node.id.to_string())),
            NodeField::Hostname => Some(Cow::Borrowed(node.hostname.as_ref())),
            NodeField::Role => Some(Cow::Owned(node.role.to_string())),
            NodeField::NodeLabel(k) => node.labels.get(k).map(|v| Cow::Borrowed(v.as_str())),
            NodeField::EngineLabel(k) => {
                node.engine_labels.get(k).map(|v| Cow::Borrowed(v.as_str()))
            }
        }
    }

    /// Parses `node.id`, `node.hostname`, `node.role`, `node.labels.<k>`, `engine.labels.<k>`.
    /// The fixed prefixes compare without case, as Docker's do; label keys keep their case.
    fn parse(key: &str) -> Option<NodeField> {
        let lower = key.to_ascii_lowercase();
        match lower.as_str() {
            "node.id" => return Some(NodeField::Id),
            "node.hostname" => return Some(NodeField::Hostname),
            "node.role" => return Some(NodeField::Role),
            _ => {}
        }
        for (prefix, make) in [
            (
                "node.labels.",
                NodeField::NodeLabel as fn(String) -> NodeField,
            ),
            (
                "engine.labels.",
                NodeField::EngineLabel as fn(String) -> NodeField,
            ),
        ] {
            if lower.starts_with(prefix) && key.len() > prefix.len() {
                let label = &key[prefix.len()..];
                if label_key_ok(label) {
                    return Some(make(label.to_string()));
                }
                return None;
            }
        }
        None
    }
}

impl fmt::Display for NodeField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeField::Id => f.write_str("node.id"),
            NodeField::Hostname => f.write_str("node.hostname"),
            NodeField::Role => f.write_str("node.role"),
            NodeField::NodeLabel(k) => write!(f, "node.labels.{k}"),
            NodeField::EngineLabel(k) => write!(f, "engine.labels.{k}"),
        }
    }
}

fn label_key_ok(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Operator {
    Eq,
    NotEq,
}

/// One parsed constraint: `<field> == <value>` or `<field> != <value>`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Constraint {
    pub field: NodeField,
    pub op: Operator,
    pub value: String,
}

/// Why an expression was refused. Nothing is stored when one is returned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConstraintError {
    #[error("invalid constraint {0:?}: expected == or !=")]
    NoOperator(String),
    #[error(
        "invalid constraint {0:?}: the key must be node.id, node.hostname, node.role, \
         node.labels.<key> or engine.labels.<key>"
    )]
    BadKey(String),
    #[error(
        "invalid constraint {0:?}: the value must be non-empty and must not hold =, !, <, > or ~"
    )]
    BadValue(String),
    #[error("invalid constraint {0:?}: longer than {EXPRESSION_BYTES_MAX} bytes")]
    TooLong(String),
    #[error(
        "invalid placement preference {0:?}: expected spread=node.labels.<key> or spread=engine.labels.<key>"
    )]
    BadPreference(String),
}

impl Constraint {
    /// Parses one expression as `--constraint` takes it; spaces around the operator are allowed.
    pub fn parse(expr: &str) -> Result<Constraint, ConstraintError> {
        if expr.len() > EXPRESSION_BYTES_MAX {
            // Show the start only: the error may be printed or logged.
            let mut shown: String = expr.chars().take(64).collect();
            shown.push('…');
            return Err(ConstraintError::TooLong(shown));
        }
        // `==` is looked for first, as Docker does, so `a!=b` is never read as `a!` `=` `b`.
        let (key, op, value) = if let Some((k, v)) = expr.split_once("==") {
            (k, Operator::Eq, v)
        } else if let Some((k, v)) = expr.split_once("!=") {
            (k, Operator::NotEq, v)
        } else {
            return Err(ConstraintError::NoOperator(expr.to_string()));
        };
        let field = NodeField::parse(key.trim())
            .ok_or_else(|| ConstraintError::BadKey(expr.to_string()))?;
        let value = value.trim();
        if value.is_empty() || value.contains(['=', '!', '<', '>', '~']) {
            return Err(ConstraintError::BadValue(expr.to_string()));
        }
        Ok(Constraint {
            field,
            op,
            value: value.to_string(),
        })
    }

    /// Parses every expression of a spec; the first bad one is the error.
    pub fn parse_all<S: AsRef<str>>(exprs: &[S]) -> Result<Vec<Constraint>, ConstraintError> {
        exprs
            .iter()
            .map(|e| Constraint::parse(e.as_ref()))
            .collect()
    }

    pub fn matches(&self, node: &NodeView) -> bool {
        let actual = self.field.value(node);
        let equal = self
            .value
            .eq_ignore_ascii_case(actual.as_deref().unwrap_or(""));
        match self.op {
            Operator::Eq => equal,
            Operator::NotEq => !equal,
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Operator::Eq => "==",
            Operator::NotEq => "!=",
        };
        write!(f, "{}{op}{}", self.field, self.value)
    }
}

/// Every constraint holds on `node`.
pub fn all_match(constraints: &[Constraint], node: &NodeView) -> bool {
    constraints.iter().all(|c| c.matches(node))
}

/// A placement preference: spread a service's tasks evenly over the values of one label.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Preference {
    /// Always a [`NodeField::NodeLabel`] or [`NodeField::EngineLabel`].
    pub spread: NodeField,
}

impl Preference {
    /// Parses `spread=node.labels.<k>` or `spread=engine.labels.<k>` (`--placement-pref`).
    pub fn parse(expr: &str) -> Result<Preference, ConstraintError> {
        let bad = || ConstraintError::BadPreference(expr.to_string());
        if expr.len() > EXPRESSION_BYTES_MAX {
            return Err(bad());
        }
        let (kind, key) = expr.split_once('=').ok_or_else(bad)?;
        if !kind.trim().eq_ignore_ascii_case("spread") {
            return Err(bad());
        }
        match NodeField::parse(key.trim()) {
            Some(f @ (NodeField::NodeLabel(_) | NodeField::EngineLabel(_))) => {
                Ok(Preference { spread: f })
            }
            _ => Err(bad()),
        }
    }

    pub fn parse_all<S: AsRef<str>>(exprs: &[S]) -> Result<Vec<Preference>, ConstraintError> {
        exprs
            .iter()
            .map(|e| Preference::parse(e.as_ref()))
            .collect()
    }
}

/// Checks a spec's placement as `service create` and `service update` must, before storing it.
pub fn validate_placement(placement: &crate::model::Placement) -> Result<(), ConstraintError> {
    Constraint::parse_all(&placement.constraints)?;
    Preference::parse_all(&placement.preferences)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NodeId, Role};
    use crate::scheduler::tests_support::node;

    #[test]
    fn parses_docker_syntax_with_and_without_spaces() {
        let c = Constraint::parse("node.labels.env==prod").unwrap();
        assert_eq!(c.field, NodeField::NodeLabel("env".into()));
        assert_eq!(c.op, Operator::Eq);
        assert_eq!(c.value, "prod");
        let c = Constraint::parse(" node.role != manager ").unwrap();
        assert_eq!(c.field, NodeField::Role);
        assert_eq!(c.op, Operator::NotEq);
        assert_eq!(c.value, "manager");
        let c = Constraint::parse("engine.labels.Disk == ssd").unwrap();
        assert_eq!(c.field, NodeField::EngineLabel("Disk".into()));
        assert_eq!(c.to_string(), "engine.labels.Disk==ssd");
        assert_eq!(
            Constraint::parse("NODE.HOSTNAME==a").unwrap().field,
            NodeField::Hostname
        );
    }

    #[test]
    fn refuses_bad_expressions_with_clear_errors() {
        let e = Constraint::parse("node.labels.env=prod").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid constraint \"node.labels.env=prod\": expected == or !="
        );
        assert!(matches!(
            Constraint::parse("node.colour==red"),
            Err(ConstraintError::BadKey(_))
        ));
        assert!(matches!(
            Constraint::parse("node.labels.==x"),
            Err(ConstraintError::BadKey(_))
        ));
        assert!(matches!(
            Constraint::parse("node.labels.a b==x"),
            Err(ConstraintError::BadKey(_))
        ));
        assert!(matches!(
            Constraint::parse("node.role=="),
            Err(ConstraintError::BadValue(_))
        ));
        assert!(matches!(
            Constraint::parse("node.role===manager"),
            Err(ConstraintError::BadValue(_))
        ));
        let long = format!("node.labels.a=={}", "x".repeat(EXPRESSION_BYTES_MAX));
        assert!(matches!(
            Constraint::parse(&long),
            Err(ConstraintError::TooLong(_))
        ));
    }

    #[test]
    fn matches_like_swarmkit() {
        let mut n = node(7);
        n.role = Role::Manager;
        n.hostname = "Alpha".into();
        n.labels.to_mut().insert("env".into(), "Prod".into());
        n.engine_labels.to_mut().insert("disk".into(), "ssd".into());
        let m = |e: &str| Constraint::parse(e).unwrap().matches(&n);
        assert!(m("node.role==manager"));
        assert!(!m("node.role==worker"));
        assert!(m("node.hostname==alpha"), "values compare without case");
        assert!(m("node.labels.env==prod"));
        assert!(!m("node.labels.ENV==prod"), "label keys keep their case");
        assert!(m("node.labels.zone!=east"), "a missing label is not equal");
        assert!(!m("node.labels.zone==east"));
        assert!(m("engine.labels.disk==ssd"));
        assert!(!m("node.labels.disk==ssd"), "node and engine labels differ");
        assert!(m(&format!("node.id=={}", NodeId(7))));
        assert!(!m(&format!("node.id=={}", NodeId(8))));
    }

    #[test]
    fn preferences_parse_and_validate() {
        let p = Preference::parse("spread=node.labels.zone").unwrap();
        assert_eq!(p.spread, NodeField::NodeLabel("zone".into()));
        let p = Preference::parse("spread = engine.labels.rack").unwrap();
        assert_eq!(p.spread, NodeField::EngineLabel("rack".into()));
        for bad in [
            "spread=node.role",
            "pack=node.labels.zone",
            "node.labels.zone",
            "",
        ] {
            let e = Preference::parse(bad).unwrap_err();
            assert!(matches!(e, ConstraintError::BadPreference(_)), "{bad}");
            assert!(e.to_string().contains("spread=node.labels.<key>"));
        }
        let placement = crate::model::Placement {
            constraints: vec!["node.role==worker".into()],
            preferences: vec!["spread=node.labels.zone".into()],
            max_replicas: 0,
        };
        assert!(validate_placement(&placement).is_ok());
        let bad = crate::model::Placement {
            constraints: vec!["node.role=worker".into()],
            preferences: vec![],
            max_replicas: 0,
        };
        assert!(validate_placement(&bad).is_err());
    }
}
