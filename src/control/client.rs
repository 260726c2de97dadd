//! The control socket's client side: every command but `start` goes through here.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use swarm_actors::wire::{read_frame, write_frame};
use tokio::net::UnixStream;

use super::proto::{ControlRequest, ControlResponse};

/// How long a client command waits for the node's answer.
pub const CLIENT_DEADLINE_MS: u64 = 15_000;

#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// From `-H/--host unix:///path` (or `SWARM_NODE_HOST`), else `<data-dir>/control.sock`.
    pub fn new(host: Option<&str>, data_dir: &std::path::Path) -> anyhow::Result<Client> {
        let socket = match host {
            Some(h) => match h.strip_prefix("unix://") {
                Some(path) => PathBuf::from(path),
                None => bail!(
                    "--host {h:?} is not supported: give unix:///path/to/control.sock (remote hosts over QUIC are not implemented yet)"
                ),
            },
            None => data_dir.join("control.sock"),
        };
        Ok(Client { socket })
    }

    pub async fn call(&self, req: ControlRequest) -> anyhow::Result<ControlResponse> {
        let exchange = async {
            let mut stream = UnixStream::connect(&self.socket).await.with_context(|| {
                format!(
                    "cannot reach a swarm-node at {} (is `swarm-node start` running with that data dir?)",
                    self.socket.display()
                )
            })?;
            write_frame(&mut stream, &req).await?;
            let resp: Option<ControlResponse> = read_frame(&mut stream).await?;
            resp.ok_or_else(|| anyhow!("the node closed the control connection without answering"))
        };
        let resp = tokio::time::timeout(Duration::from_millis(CLIENT_DEADLINE_MS), exchange)
            .await
            .map_err(|_| anyhow!("the node did not answer within {CLIENT_DEADLINE_MS} ms"))??;
        if let ControlResponse::Error(e) = resp {
            bail!("{e}");
        }
        Ok(resp)
    }
}
