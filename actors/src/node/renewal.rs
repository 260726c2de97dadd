//! Certificate renewal, carried out off the node actor: when to renew (a random point in the
//! certificate's life), asking the local store or another manager, and installing the result.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use ractor::ActorRef;
use rand::RngExt;
use tracing::{debug, info, warn};

use super::{NodeActorState, NodeMsg, RENEW_RETRY, admission, unix_secs};
use crate::trust::{NodeCredentials, NodeKey, PeerIdentity};
use crate::wire::{Request, Response};

impl NodeActorState {
    /// Schedules the next renewal at a random point between 50 % and 80 % of the certificate's
    /// life, so that nodes issued together do not all renew at once.
    pub(super) fn schedule_renewal(&mut self, myself: &ActorRef<NodeMsg>) {
        let fraction = self.rng.random_range(0.5..0.8);
        let at = self.creds.renewal_at(fraction);
        #[allow(clippy::disallowed_methods)] // a certificate's expiry is wall-clock time
        let after = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        debug!(after_s = after.as_secs(), "certificate renewal scheduled");
        myself.send_after(after, || NodeMsg::RenewCertificate);
    }

    pub(super) fn renew(&mut self, myself: &ActorRef<NodeMsg>) {
        self.renewing = true;
        let key = match NodeKey::generate() {
            Ok(k) => k,
            Err(e) => {
                let _ = myself.send_message(NodeMsg::Renewed(Err(e.to_string()))); // actor is alive: it is us
                return;
            }
        };
        let csr = match key.csr_der() {
            Ok(c) => c,
            Err(e) => {
                let _ = myself.send_message(NodeMsg::Renewed(Err(e.to_string()))); // as above
                return;
            }
        };
        let ca = self.creds.ca_cert_der.clone();
        let me = PeerIdentity {
            node_id: self.creds.node_id,
            role: self.creds.role,
        };
        let store = self.store.clone();
        let validity = self.cert_validity;
        let self_addr = self.membership.me().addr;
        let managers: Vec<SocketAddr> = self
            .manager_addrs()
            .into_iter()
            .filter(|a| *a != self_addr)
            .collect();
        let transport = self.transport.clone();
        let myself = myself.clone();
        tokio::spawn(async move {
            // Hands the new certificate, with the key it was asked for, to the actor.
            let done = |cert_der: Vec<u8>, intermediates: Vec<Vec<u8>>| {
                let result = NodeCredentials::from_chain(key, cert_der, intermediates, ca)
                    .map(Box::new)
                    .map_err(|e| e.to_string());
                let _ = myself.send_message(NodeMsg::Renewed(result)); // node may be stopping
            };
            let mut last = "no manager is reachable".to_string();
            // A manager first asks its own replica; when that cannot answer (a new manager
            // still catching up), it asks the other managers like a worker does.
            if let Some(store) = store {
                match admission::renew(store, me, csr.clone(), validity).await {
                    Response::Renewed {
                        cert_der,
                        intermediates,
                    } => return done(cert_der, intermediates),
                    other => last = format!("local store: {other:?}"),
                }
            }
            for addr in managers {
                let req = Request::Renew(crate::wire::RenewRequest {
                    csr_der: csr.clone(),
                });
                match transport.request(addr, req).await {
                    Ok(Response::Renewed {
                        cert_der,
                        intermediates,
                    }) => return done(cert_der, intermediates),
                    Ok(other) => last = format!("{addr} answered {other:?}"),
                    Err(e) => last = format!("{addr}: {e}"),
                }
            }
            let _ = myself.send_message(NodeMsg::Renewed(Err(last))); // node may be stopping
        });
    }

    pub(super) fn install_credentials(
        &mut self,
        myself: &ActorRef<NodeMsg>,
        creds: NodeCredentials,
    ) {
        if let Err(e) = creds.save(&self.data_dir) {
            warn!(error = %e, "cannot save the renewed certificate; keeping the old one");
            myself.send_after(RENEW_RETRY, || NodeMsg::RenewCertificate);
            return;
        }
        if let Err(e) = self.transport.reload_credentials(&creds) {
            warn!(error = %e, "transport did not take the renewed certificate");
        }
        if creds.role != self.creds.role {
            // Peers judge what we may send by the certificate on the connection: open ones
            // carry the old role, so they are replaced by connections with the new one.
            info!(role = %creds.role, "certificate role changed: reconnecting to every peer");
            self.transport.reconnect_all();
        }
        info!(
            not_after_unix = unix_secs(creds.not_after),
            "certificate renewed"
        );
        self.creds = creds;
        self.schedule_renewal(myself);
    }
}
