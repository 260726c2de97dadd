//! Joining: the one exchange a node makes before it has a certificate.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quinn::{Endpoint, IdleTimeout};
use tracing::debug;

use super::TransportError;
use super::conn::{CODE_BUSY, CODE_NOT_A_MANAGER, CODE_SHUTDOWN, identity_of};
use super::shared::client_config;
use crate::model::Role;
use crate::trust::{self, CaDigest, PeerIdentity, SERVER_NAME, TrustError};
use crate::wire::{
    JoinRequest, JoinResponse, Request, Response, WireFailure, encode_frame, read_frame,
};

/// How long `join` waits for the seed to acknowledge the close of its one-shot connection.
const JOIN_LINGER_MS: u64 = 200;

/// Whether a seed may be given a join token: only a manager's certificate (the CA is already
/// pinned by the handshake) says the seed can admit a node; anyone else holding a cluster
/// certificate, a worker, could keep the token and join as whatever it grants. Nothing is sent
/// before this says yes.
pub(crate) fn seed_may_take_token(
    seed: SocketAddr,
    identity: Result<Option<PeerIdentity>, TrustError>,
) -> Result<PeerIdentity, TransportError> {
    match identity {
        Ok(Some(id)) if id.role == Role::Manager => Ok(id),
        Ok(Some(id)) => Err(TransportError::SeedNotAManager {
            addr: seed,
            node: id.node_id,
            role: id.role,
        }),
        Ok(None) => Err(TransportError::Connect {
            addr: seed,
            reason: "the seed presented no certificate".into(),
        }),
        Err(e) => Err(TransportError::Connect {
            addr: seed,
            reason: format!("the seed's certificate names no node: {e}"),
        }),
    }
}

/// Whether the seed closed the connection at its bound on connections without a
/// certificate: it is busy, not gone, and the joiner may try again.
fn closed_busy(e: &quinn::ConnectionError) -> bool {
    matches!(e, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == CODE_BUSY)
}

/// Asks the node at `seed` to let this node join, before this node has a certificate: a
/// one-shot endpoint on an ephemeral port, the seed pinned by `ca_digest` (a seed of another
/// cluster fails the handshake), its certificate checked to say manager (else
/// [`TransportError::SeedNotAManager`], and the token is not sent), `Request::Join`, and the
/// answer. `Response::Failed(f)` comes back as [`TransportError::Refused`]; everything runs
/// under `timeout`.
pub async fn join(
    seed: SocketAddr,
    ca_digest: &CaDigest,
    req: JoinRequest,
    timeout: Duration,
) -> Result<JoinResponse, TransportError> {
    let tls = trust::join_client_config(ca_digest)?;
    let mut quic = quinn::TransportConfig::default();
    let idle = IdleTimeout::try_from(timeout.max(Duration::from_millis(1)))
        .map_err(|e| TransportError::Config(format!("join timeout: {e}")))?;
    quic.max_idle_timeout(Some(idle));
    let client = client_config(tls, &Arc::new(quic))?;
    let bind: SocketAddr = if seed.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let endpoint =
        Endpoint::client(bind).map_err(|source| TransportError::Bind { addr: bind, source })?;
    let exchange = async {
        let conn = endpoint
            .connect_with(client, seed, SERVER_NAME)
            .map_err(|e| TransportError::Connect {
                addr: seed,
                reason: e.to_string(),
            })?
            .await
            .map_err(|e| {
                if closed_busy(&e) {
                    TransportError::Refused(WireFailure::Busy)
                } else {
                    TransportError::Connect {
                        addr: seed,
                        reason: e.to_string(),
                    }
                }
            })?;
        if let Err(e) = seed_may_take_token(seed, identity_of(&conn)) {
            conn.close(CODE_NOT_A_MANAGER, b"a join goes to a manager only");
            return Err(e);
        }
        let lost = |e: &dyn std::fmt::Display| match conn.close_reason() {
            Some(reason) if closed_busy(&reason) => TransportError::Refused(WireFailure::Busy),
            _ => TransportError::Connection {
                addr: seed,
                reason: e.to_string(),
            },
        };
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| lost(&e))?;
        let frame = encode_frame(&Request::Join(req))?;
        send.write_all(&frame).await.map_err(|e| lost(&e))?;
        send.finish().map_err(|e| lost(&e))?;
        let resp: Option<Response> =
            read_frame(&mut recv)
                .await
                .map_err(|e| match conn.close_reason() {
                    Some(reason) if closed_busy(&reason) => {
                        TransportError::Refused(WireFailure::Busy)
                    }
                    _ => TransportError::Wire(e),
                })?;
        conn.close(CODE_SHUTDOWN, b"joined");
        resp.ok_or_else(|| lost(&"the seed ended the stream without an answer"))
    };
    let result = tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(TransportError::Timeout));
    endpoint.close(CODE_SHUTDOWN, b"done");
    // Briefly, so the seed hears the close instead of waiting out its idle timeout.
    let linger = Duration::from_millis(JOIN_LINGER_MS);
    if tokio::time::timeout(linger, endpoint.wait_idle())
        .await
        .is_err()
    {
        debug!("the seed did not acknowledge the close within {JOIN_LINGER_MS} ms");
    }
    match result? {
        Response::Joined(resp) => Ok(resp),
        Response::Failed(f) => Err(TransportError::Refused(f)),
        other => Err(TransportError::Unexpected(format!("{other:?}"))),
    }
}
