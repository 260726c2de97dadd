//! Stacks: whole applications from compose files (`stack deploy/ls/services/ps/rm/config`).
//!
//! ```text
//!  compose files ──parse, interpolate, merge──▶ compose::File ──convert──▶ StackPlan
//!  StackPlan ──(the CLI, through the control API)──▶ networks, secrets, configs, services
//! ```
//!
//! `compose/` reads the files as `docker stack deploy` does and turns them into a
//! [`StackPlan`]: every object the stack owns, with its full name (`<stack>_<name>` unless the
//! file sets `name:`) and the label `com.docker.stack.namespace=<stack>`. The CLI
//! (`cmd/stack/`) applies a plan through the same control requests the other commands use.

pub mod compose;
pub mod plan;

#[cfg(test)]
pub use plan::StackNetwork;
pub use plan::{NAMESPACE_LABEL, StackFile, StackPlan, StackService};
