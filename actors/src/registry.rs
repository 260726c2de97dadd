//! The per-node registry of named actors, through which the admin shell reaches them.
//!
//! ractor's own named registry is global to the process, so several simulated nodes in one
//! process would collide in it; every node keeps this registry instead. An entry is an
//! [`AdminTarget`]: something that lists the messages it takes and answers one of them, given as
//! a name and JSON arguments, by turning it into the actor's own typed message.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use serde_json::Value;
use tokio::sync::oneshot;

/// The most actors one node registers. A node hosts one NodeActor, a handful of managers'
/// actors, and one TaskActor per task; this bounds what a runaway workload can add.
pub const ACTORS_MAX: usize = 10_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdminError {
    #[error("no actor named {0:?} on this node (try `actors`)")]
    NoSuchActor(String),
    #[error("actor {actor} takes no message {msg:?}; it takes: {known}")]
    NoSuchMessage {
        actor: String,
        msg: String,
        known: String,
    },
    #[error("arguments for {msg} do not fit: {why}")]
    BadArguments { msg: String, why: String },
    #[error("actor {0} did not answer: {1}")]
    NoAnswer(String, String),
    #[error("actor {0:?} is registered already")]
    Duplicate(String),
    #[error("this node already hosts {ACTORS_MAX} actors")]
    Full,
}

/// An answer on its way.
pub type AdminReply<'a> = Pin<Box<dyn Future<Output = Result<Value, AdminError>> + Send + 'a>>;

/// An actor as the admin shell sees it.
pub trait AdminTarget: Send + Sync {
    /// The message names this actor takes from the shell, for completion and for errors.
    fn messages(&self) -> &'static [&'static str];
    /// Sends message `msg` with arguments `args` (JSON; `Null` when none were given) and waits
    /// for the answer.
    fn call(&self, msg: &str, args: Value) -> AdminReply<'_>;
}

/// Names to actors, for one node.
///
/// Besides the names it carries the node's in-process paths between its agent and its leader,
/// since a node does not send itself messages over the network: the leader actor wakes the
/// local agent through [`Registry::agent_poke`] when it changes this node's assignments, and
/// the local agent's session reaches the leader actor through [`Registry::leader_session`].
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<RwLock<BTreeMap<String, Arc<dyn AdminTarget>>>>,
    agent_poke: Arc<tokio::sync::Notify>,
    leader_sessions: Arc<RwLock<Option<SessionSink>>>,
}

/// Hands a session to this node's leader actor; its answer goes to the sender.
pub type SessionSink = Arc<
    dyn Fn(crate::model::NodeId, crate::wire::SessionReport, oneshot::Sender<crate::wire::Response>)
        + Send
        + Sync,
>;

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&self, name: String, target: Arc<dyn AdminTarget>) -> Result<(), AdminError> {
        let mut map = self.inner.write().expect("registry lock poisoned");
        if map.contains_key(&name) {
            return Err(AdminError::Duplicate(name));
        }
        if map.len() >= ACTORS_MAX {
            return Err(AdminError::Full);
        }
        map.insert(name, target);
        Ok(())
    }

    /// The local agent waits on this; the leader notifies it.
    pub fn agent_poke(&self) -> Arc<tokio::sync::Notify> {
        self.agent_poke.clone()
    }

    /// Set by the node actor while its leader actor runs, cleared when it stops.
    pub fn set_leader_sessions(&self, sink: Option<SessionSink>) {
        *self
            .leader_sessions
            .write()
            .expect("registry lock poisoned") = sink;
    }

    /// Opens a session with this node's leader actor; `None` when this node does not lead.
    pub fn leader_session(
        &self,
        from: crate::model::NodeId,
        report: crate::wire::SessionReport,
    ) -> Option<oneshot::Receiver<crate::wire::Response>> {
        let sink = self
            .leader_sessions
            .read()
            .expect("registry lock poisoned")
            .clone()?;
        let (tx, rx) = oneshot::channel();
        sink(from, report, tx);
        Some(rx)
    }

    /// Removes every name that starts with `prefix` (a leader's `service/` entries).
    pub fn unregister_prefix(&self, prefix: &str) {
        self.inner
            .write()
            .expect("registry lock poisoned")
            .retain(|k, _| !k.starts_with(prefix));
    }

    pub fn unregister(&self, name: &str) {
        self.inner
            .write()
            .expect("registry lock poisoned")
            .remove(name);
    }

    /// Every registered name with the messages it takes, in name order.
    pub fn list(&self) -> Vec<(String, Vec<String>)> {
        self.inner
            .read()
            .expect("registry lock poisoned")
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.messages().iter().map(|m| m.to_string()).collect(),
                )
            })
            .collect()
    }

    pub fn get(&self, name: &str) -> Result<Arc<dyn AdminTarget>, AdminError> {
        self.inner
            .read()
            .expect("registry lock poisoned")
            .get(name)
            .cloned()
            .ok_or_else(|| AdminError::NoSuchActor(name.to_string()))
    }

    /// Sends one message by name and waits for the answer.
    pub async fn send(&self, actor: &str, msg: &str, args: Value) -> Result<Value, AdminError> {
        let target = self.get(actor)?;
        if !target.messages().contains(&msg) {
            return Err(AdminError::NoSuchMessage {
                actor: actor.to_string(),
                msg: msg.to_string(),
                known: target.messages().join(", "),
            });
        }
        target.call(msg, args).await
    }
}

/// Builds the JSON form serde gives an externally tagged enum variant, so a target can decode
/// `(name, args)` into its typed admin message: a unit variant is `"Name"`, any other
/// `{"Name": args}`.
pub fn tagged(msg: &str, args: Value) -> Value {
    match args {
        Value::Null => Value::String(msg.to_string()),
        args => {
            let mut map = serde_json::Map::new();
            map.insert(msg.to_string(), args);
            Value::Object(map)
        }
    }
}

/// Decodes `(name, args)` as the shell gives them into an actor's typed admin message.
pub fn decode<T: serde::de::DeserializeOwned>(msg: &str, args: Value) -> Result<T, AdminError> {
    serde_json::from_value(tagged(msg, args)).map_err(|e| AdminError::BadArguments {
        msg: msg.to_string(),
        why: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    impl AdminTarget for Echo {
        fn messages(&self) -> &'static [&'static str] {
            &["Echo"]
        }
        fn call(&self, _msg: &str, args: Value) -> AdminReply<'_> {
            Box::pin(async move { Ok(args) })
        }
    }

    #[tokio::test]
    async fn routes_by_name_and_refuses_unknowns() {
        let reg = Registry::new();
        reg.register("echo/1".into(), Arc::new(Echo)).unwrap();
        assert_eq!(
            reg.register("echo/1".into(), Arc::new(Echo)),
            Err(AdminError::Duplicate("echo/1".into()))
        );
        let v = reg
            .send("echo/1", "Echo", serde_json::json!({"a": 1}))
            .await
            .unwrap();
        assert_eq!(v, serde_json::json!({"a": 1}));
        assert!(matches!(
            reg.send("nope", "Echo", Value::Null).await,
            Err(AdminError::NoSuchActor(_))
        ));
        assert!(matches!(
            reg.send("echo/1", "Shout", Value::Null).await,
            Err(AdminError::NoSuchMessage { .. })
        ));
        assert_eq!(
            reg.list(),
            vec![("echo/1".to_string(), vec!["Echo".to_string()])]
        );
    }

    #[test]
    fn tags_like_serde() {
        assert_eq!(tagged("A", Value::Null), serde_json::json!("A"));
        assert_eq!(
            tagged("B", serde_json::json!({"x": 1})),
            serde_json::json!({"B": {"x": 1}})
        );
    }
}
