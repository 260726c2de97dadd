//! What membership believes of a datagram, given who really sent it.
//!
//! SWIM trusts every member: any member may say anything about any other. Here the transport
//! proves who sent each datagram (the sender's certificate names its node and role), and
//! [`Sender`] carries that proof into the machine. The rules:
//!
//! - A foca packet's header must name its real sender, at an address no other live node holds.
//! - A node's identity and liveness come from itself: news relayed by another member may not
//!   refute a suspicion of that node (an `Alive` at a higher incarnation), may not suspect or
//!   kill it at an incarnation it never had, and may move its identity (the bump) forward by at
//!   most one restart ([`RELAYED_BUMP_AHEAD_MAX`]): so nobody can push a node's numbers to the
//!   maximum and win over it for ever. News that a member is suspect or down stays gossip:
//!   SWIM needs it, and the node refutes what is false.
//! - A node's description (address, role, resources, labels, runtimes) is taken only from the
//!   node itself, and never with a role its certificate lacks (see `broadcast.rs` and the
//!   machine's direct descriptions).
//!
//! What stays open is written up in docs/security.md: a member may still relay a node we have
//! never heard of (we cannot tell a forged newcomer from a real one before it speaks to us), and
//! may suspect any member, which costs that member a refutation.

use foca::{Incarnation, Member, State, Vetting};

use super::MemberId;
use crate::model::{NodeId, Role};

/// Who sent a datagram, as the transport authenticated it: the node and role its certificate
/// names. The simulator, which has no certificates, names the node that sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sender {
    pub id: NodeId,
    pub role: Role,
}

/// How far ahead of the identity we list a relayed identity of a node may be: one restart
/// (a new boot counter) and the rejoins after it. A node's own packets may carry any identity.
pub const RELAYED_BUMP_AHEAD_MAX: u64 = 2 * MemberId::BUMPS_PER_BOOT;

/// Whether a node with a certificate for `cert` may describe itself as `claimed`.
pub fn role_allowed(cert: Role, claimed: Role) -> bool {
    claimed == Role::Worker || cert == Role::Manager
}

/// Whether `src` may use its address: no other node is alive or suspect there.
pub fn address_free_for(src: &MemberId, known: Option<&Member<MemberId>>) -> bool {
    known.is_none_or(|k| k.id().id == src.id || k.state() == State::Down)
}

/// The vetting of one datagram from `from`, for foca.
pub struct Vet<'a> {
    pub from: Sender,
    pub me: &'a MemberId,
    pub incarnation: Incarnation,
    /// Updates skipped and senders refused, for the machine's stats.
    pub refused: u64,
}

impl Vet<'_> {
    fn judge(
        &self,
        src: &MemberId,
        update: &Member<MemberId>,
        known: Option<&Member<MemberId>>,
    ) -> bool {
        let about = update.id();
        if about.id == src.id {
            // A node speaking of itself, at its own address.
            return about.addr == src.addr;
        }
        if about.addr == self.me.addr {
            // About us (or an identity at our address): nobody can know an incarnation of ours
            // beyond the one we have, nor a newer identity than ours.
            return about.bump <= self.me.bump && update.incarnation() <= self.incarnation;
        }
        let Some(known) = known else {
            // A member we have not heard of: relayed news of a newcomer (see the module docs).
            return true;
        };
        let listed = known.id();
        if listed.id != about.id {
            // Another node's address: only once the node listed there is down.
            return known.state() == State::Down;
        }
        if about.bump > listed.bump {
            return about.bump - listed.bump <= RELAYED_BUMP_AHEAD_MAX;
        }
        if about.bump < listed.bump {
            return true; // stale news of an older identity: foca ignores it
        }
        match update.state() {
            // A refutation of a suspicion: only from the node itself.
            State::Alive => update.incarnation() <= known.incarnation(),
            // Suspicion and death are gossip, at an incarnation the node has had (or the next
            // one, which it may have refuted with a member that told the relayer).
            State::Suspect | State::Down => {
                update.incarnation() <= known.incarnation().saturating_add(1)
            }
        }
    }
}

impl Vetting<MemberId> for Vet<'_> {
    fn sender(&mut self, src: &MemberId, known: Option<&Member<MemberId>>) -> bool {
        let ok = src.id == self.from.id && !src.is_seed() && address_free_for(src, known);
        if !ok {
            self.refused += 1;
        }
        ok
    }

    fn update(
        &mut self,
        src: &MemberId,
        update: &Member<MemberId>,
        known: Option<&Member<MemberId>>,
    ) -> bool {
        let ok = self.judge(src, update, known);
        if !ok {
            self.refused += 1;
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn id(n: u128, bump: u64) -> MemberId {
        let addr: SocketAddr = format!("10.0.0.{n}:2377").parse().unwrap();
        MemberId {
            id: NodeId(n),
            addr,
            bump,
        }
    }

    fn vet(me: &MemberId, from: u128) -> Vet<'_> {
        Vet {
            from: Sender {
                id: NodeId(from),
                role: Role::Worker,
            },
            me,
            incarnation: 3,
            refused: 0,
        }
    }

    #[test]
    fn a_packet_must_name_its_real_sender_at_a_free_address() {
        let me = id(1, 0);
        let mut v = vet(&me, 2);
        assert!(v.sender(&id(2, 0), None));
        assert!(!v.sender(&id(3, 0), None), "node 2 posing as node 3");
        let other_at_addr = Member::alive(MemberId {
            addr: id(2, 0).addr,
            ..id(4, 0)
        });
        assert!(
            !v.sender(&id(2, 0), Some(&other_at_addr)),
            "an address a live node holds"
        );
        let down = Member::new(other_at_addr.id().clone(), 0, State::Down);
        assert!(v.sender(&id(2, 0), Some(&down)), "a dead node's address");
        assert_eq!(v.refused, 2);
    }

    #[test]
    fn relayed_news_cannot_refute_or_push_numbers_ahead() {
        let me = id(1, 0);
        let mut v = vet(&me, 2);
        let src = id(2, 0);
        let known = Member::new(id(3, 0), 5, State::Suspect);
        // Refutation of node 3's suspicion, relayed by node 2.
        let refute = Member::new(id(3, 0), 6, State::Alive);
        assert!(!v.update(&src, &refute, Some(&known)));
        // Suspicion at an incarnation node 3 never had, to make it unable to refute.
        let suspect_max = Member::new(id(3, 0), Incarnation::MAX, State::Suspect);
        assert!(!v.update(&src, &suspect_max, Some(&known)));
        // An identity of node 3 far ahead of the one we list, to win its address for ever.
        let ahead = Member::alive(id(3, u64::MAX));
        assert!(!v.update(&src, &ahead, Some(&known)));
        // What SWIM needs still passes: suspicion and death at a known incarnation, a restart.
        let suspect = Member::new(id(3, 0), 5, State::Suspect);
        let down = Member::new(id(3, 0), 6, State::Down);
        let restarted = Member::alive(id(3, MemberId::BUMPS_PER_BOOT));
        assert!(v.update(&src, &suspect, Some(&known)));
        assert!(v.update(&src, &down, Some(&known)));
        assert!(v.update(&src, &restarted, Some(&known)));
        // A node may say anything of itself.
        let own = Member::new(id(2, 9), Incarnation::MAX, State::Alive);
        assert!(v.update(&src, &own, None));
    }

    #[test]
    fn nobody_speaks_for_us_beyond_what_we_are() {
        let me = id(1, 4);
        let mut v = vet(&me, 2);
        let src = id(2, 0);
        assert!(v.update(&src, &Member::new(id(1, 4), 3, State::Suspect), None));
        assert!(!v.update(&src, &Member::new(id(1, 4), 9, State::Suspect), None));
        assert!(!v.update(&src, &Member::alive(id(1, 5)), None));
    }

    #[test]
    fn roles_are_capped_by_the_certificate() {
        assert!(role_allowed(Role::Manager, Role::Manager));
        assert!(role_allowed(Role::Manager, Role::Worker));
        assert!(role_allowed(Role::Worker, Role::Worker));
        assert!(!role_allowed(Role::Worker, Role::Manager));
    }
}
