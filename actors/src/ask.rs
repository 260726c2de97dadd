//! Asking an actor and waiting, within a deadline, for its answer: the one request/reply helper
//! behind every typed handle (NodeHandle, StoreHandle, TaskHandle).

use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};

/// Why an actor gave no answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AskError {
    #[error("timed out")]
    Timeout,
    #[error("reply dropped")]
    Dropped,
    #[error("{0}")]
    Gone(String),
}

/// Sends the message `msg` builds around a reply port and waits at most `timeout_ms` for the
/// answer.
pub async fn ask<M: Message, T: Send + 'static>(
    actor: &ActorRef<M>,
    msg: impl FnOnce(RpcReplyPort<T>) -> M,
    timeout_ms: u64,
) -> Result<T, AskError> {
    match actor
        .call(msg, Some(Duration::from_millis(timeout_ms)))
        .await
    {
        Ok(CallResult::Success(v)) => Ok(v),
        Ok(CallResult::Timeout) => Err(AskError::Timeout),
        Ok(CallResult::SenderError) => Err(AskError::Dropped),
        Err(e) => Err(AskError::Gone(e.to_string())),
    }
}
