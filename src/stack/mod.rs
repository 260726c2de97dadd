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
//! (`cmd/stack.rs`) applies a plan through the same control requests the other commands use.

pub mod plan;

pub use plan::{NAMESPACE_LABEL, StackFile, StackNetwork, StackPlan, StackService, StackVolume};
pub mod compose;

pub use compose::{ComposeError, config_text, plan_files};
