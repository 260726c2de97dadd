//! One line of a task's output, as the runtimes keep it and `service logs` carries it.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogStream {
    Stdout,
    Stderr,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When the line was read, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    pub stream: LogStream,
    /// Without its newline; invalid UTF-8 replaced.
    pub text: String,
}
