//! [`Membership`]: the SWIM state machine a node runs, foca plus node descriptions.
//!
//! Inputs come in through [`Membership::handle`]; everything it wants done comes out as
//! [`MembershipEffect`]s, in order: datagrams to send, timers to set, events to report. The
//! caller owns the clock (it fires timers after the asked delay) and the sockets.
//!
//! Besides foca's own timers the machine keeps three of its own. Two are set up by
//! [`MembershipInput::Start`]:
//! - `Rebroadcast` (every `rebroadcast_period_ms`): size foca's config for the most members seen;
//!   queue our description for gossip again (every tick up to 50 members, less often in larger
//!   clusters); after a membership change, or else once a minute, sweep the
//!   book: ask members whose description we lack (or hold from an older identity) for theirs
//!   and forget descriptions of nodes foca has forgotten; and send one random member a digest
//!   (node, bump, version) of the descriptions that changed last plus a rotating window of the
//!   rest, so a node that missed a change while cut off asks the owner for it;
//! - `Reannounce` (every `announce_period_ms`): while we know no live member, announce to our
//!   seeds and to a few members we hold Down, so a node cut off from everyone finds its way back.
//!
//! The third, `Gossip` (every `gossip_period_ms`), is set only while foca has updates or
//! descriptions waiting to be sent (see `Membership::keep_gossiping`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use foca::{Foca, Member, Notification, OwnedNotification, Runtime, State};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::broadcast::{DescriptionItem, retain_listed};
use super::codec::bincode_config;
use super::interface::{
    MemberView, MembershipEffect, MembershipEvent, MembershipInput, MembershipStats,
    MembershipTimer,
};
use super::vetting::{Sender, Vet, address_free_for, role_allowed};
use super::{BincodeCodec, MemberId, MembershipConfig, MembershipError, NodeDescriptions};
use crate::model::{NodeDescription, NodeId, NodeState};

mod descriptions;
mod news;

use descriptions::check_description;
pub use news::{
    DIGEST_ENTRIES_MAX, DOWN_NEWS_FANOUT, DOWN_NEWS_KEPT, DOWN_NEWS_MAX, DOWN_NEWS_TICKS,
    TAG_DIGEST, TAG_DOWNS,
};

/// First byte of a datagram that holds a foca packet.
pub const TAG_FOCA: u8 = 0x46;
/// First byte of a datagram that holds a direct description:
/// `TAG_DESCRIPTION | bincode Option<SocketAddr> (reply to) | description item`.
pub const TAG_DESCRIPTION: u8 = 0x44;
/// Most seed addresses remembered for re-announcing.
pub const SEEDS_MAX: usize = 16;
/// Most members asked for their description per rebroadcast tick.
const PULLS_PER_TICK: usize = 8;
/// Most Down members announced to per tick while we know no live member.
const IDLE_DOWN_ANNOUNCES: usize = 3;
/// Room left in a packet for foca's header and counts when sizing description items.
const PACKET_OVERHEAD_BYTES: usize = 200;
/// Cluster size assumed until the caller says otherwise.
const DEFAULT_CLUSTER_SIZE_HINT: usize = 50;
/// Rebroadcast ticks between two full sweeps of the book (forgetting descriptions foca no
/// longer lists, looking for stale ones) when membership did not change; a change triggers
/// one at the next tick. At 1,000 members a sweep costs about 0.2-0.5 ms.
const SWEEP_EVERY_TICKS: u32 = 12;

/// Collects foca's calls into effects; notifications wait until foca returns, because
/// reacting to them needs the machine.
struct Collect<'a> {
    out: &'a mut Vec<MembershipEffect>,
    notes: &'a mut Vec<OwnedNotification<MemberId>>,
}

impl Runtime<MemberId> for Collect<'_> {
    fn notify(&mut self, notification: Notification<'_, MemberId>) {
        self.notes.push(notification.to_owned());
    }

    fn send_to(&mut self, to: MemberId, data: &[u8]) {
        let mut framed = Vec::with_capacity(data.len() + 1);
        framed.push(TAG_FOCA);
        framed.extend_from_slice(data);
        self.out.push(MembershipEffect::Send {
            to: to.addr,
            data: framed.into(),
        });
    }

    fn submit_after(&mut self, event: foca::Timer<MemberId>, after: Duration) {
        self.out.push(MembershipEffect::Schedule {
            after,
            timer: MembershipTimer::Foca(event),
        });
    }
}

pub struct Membership {
    foca: Foca<MemberId, BincodeCodec, StdRng, NodeDescriptions>,
    /// The same book foca's handler writes arrivals into.
    handler: NodeDescriptions,
    config: MembershipConfig,
    own: NodeDescription,
    /// The newest description of every other node, with the bump of the identity that sent it.
    descriptions: BTreeMap<NodeId, DescriptionItem>,
    seeds: BTreeSet<SocketAddr>,
    started: bool,
    left: bool,
    /// Rotates the idle announces over the Down members.
    down_cursor: usize,
    /// Rotates the digest window over the descriptions.
    digest_cursor: NodeId,
    /// The nodes whose descriptions changed last, newest first, at most half a digest: digests
    /// lead with them, the changes most likely missed somewhere.
    recent: VecDeque<NodeId>,
    /// Whether membership changed since the last sweep, or the last sweep found stale
    /// descriptions to ask for again. A description's arrival does not make one due: it can
    /// only end a staleness, and a description of a node no longer listed waits for the next
    /// periodic sweep to be forgotten.
    sweep_due: bool,
    /// Rebroadcast ticks since the last sweep.
    ticks_since_sweep: u32,
    /// Rebroadcast ticks since the start.
    ticks: u64,
    /// Identities we learned are Down, newest first, with the tick we learned it, told to a few
    /// members every tick for [`DOWN_NEWS_TICKS`], at most [`DOWN_NEWS_KEPT`]. A death is
    /// gossiped a bounded number of times; a member cut off meanwhile, or one that joined or
    /// restarted after the gossip faded and learned the dead node from a stale feed, would
    /// otherwise see it alive until its own probe round reaches it: about 50 s at 200 members,
    /// minutes at 1,000.
    down_news: VecDeque<(MemberId, u64)>,
    /// Where the next news of deaths starts in `down_news`.
    news_cursor: usize,
    /// The cluster size foca's config was last set for.
    size_hint: usize,
    /// Rebroadcast ticks since our description was last queued for gossip.
    ticks_since_requeue: u64,
    /// A [`MembershipTimer::Gossip`] is set.
    gossip_set: bool,
    /// Picks digest targets; foca keeps its own RNG to itself.
    rng: StdRng,
    notes: Vec<OwnedNotification<MemberId>>,
    stats: MembershipStats,
}

impl Membership {
    pub fn new(
        me: MemberId,
        description: NodeDescription,
        config: MembershipConfig,
        rng_seed: u64,
    ) -> Result<Self, MembershipError> {
        config.validate()?;
        if me.is_seed() {
            return Err(MembershipError::UnknownIdentity);
        }
        let item_bytes_max = config
            .foca_packet_bytes()
            .saturating_sub(PACKET_OVERHEAD_BYTES);
        let handler = NodeDescriptions::new(me.id, item_bytes_max);
        check_description(&me, &description, handler.item_bytes_max())?;
        let foca = Foca::with_custom_broadcast(
            me,
            config.to_foca(DEFAULT_CLUSTER_SIZE_HINT),
            StdRng::seed_from_u64(rng_seed),
            BincodeCodec,
            handler.clone(),
        );
        Ok(Membership {
            foca,
            handler,
            config,
            own: description,
            descriptions: BTreeMap::new(),
            seeds: BTreeSet::new(),
            started: false,
            left: false,
            down_cursor: 0,
            digest_cursor: NodeId::UNKNOWN,
            recent: VecDeque::new(),
            sweep_due: true,
            ticks_since_sweep: 0,
            ticks: 0,
            down_news: VecDeque::new(),
            news_cursor: 0,
            size_hint: DEFAULT_CLUSTER_SIZE_HINT,
            ticks_since_requeue: 0,
            gossip_set: false,
            rng: StdRng::seed_from_u64(rng_seed.rotate_left(29) ^ 0xd1_9e57),
            notes: Vec::new(),
            stats: MembershipStats::default(),
        })
    }

    /// Tunes foca for a cluster of about `n` members: how often updates are retransmitted (see
    /// [`MembershipConfig::to_foca`]), and how often our description is queued again. A
    /// rebroadcast tick raises it when we see more members than that.
    pub fn set_cluster_size_hint(&mut self, n: usize) {
        // Only counts change, which foca allows at any time.
        let changed = self.foca.set_config(self.config.to_foca(n));
        assert!(
            changed.is_ok(),
            "foca refused a config that only changes counts"
        );
        self.size_hint = n;
    }

    pub fn me(&self) -> &MemberId {
        self.foca.identity()
    }

    pub fn config(&self) -> &MembershipConfig {
        &self.config
    }

    /// Checks a new description of ourselves the way [`MembershipInput::Describe`] will.
    pub fn check_description(&self, d: &NodeDescription) -> Result<(), MembershipError> {
        check_description(self.me(), d, self.handler.item_bytes_max())
    }

    pub fn description(&self, id: NodeId) -> Option<&NodeDescription> {
        if id == self.me().id {
            Some(&self.own)
        } else {
            self.descriptions.get(&id).map(|item| &item.description)
        }
    }

    /// Every node we know of, ourselves included, one row per node ID in ID order. A node
    /// seen under several identities shows its newest (highest bump).
    pub fn members(&self) -> Vec<MemberView> {
        self.rows()
            .into_iter()
            .map(|(id, (_, addr, state))| MemberView {
                id,
                addr,
                state,
                description: self.description(id).cloned(),
            })
            .collect()
    }

    /// The state column of [`Membership::members`] alone, without copying descriptions.
    pub fn member_states(&self) -> BTreeMap<NodeId, NodeState> {
        self.rows()
            .into_iter()
            .map(|(id, (_, _, state))| (id, state))
            .collect()
    }

    fn rows(&self) -> BTreeMap<NodeId, (u64, SocketAddr, NodeState)> {
        let mut rows: BTreeMap<NodeId, (u64, SocketAddr, NodeState)> = BTreeMap::new();
        for m in self.foca.iter_membership_state() {
            let id = m.id();
            if id.is_seed() || id.id == self.me().id {
                continue;
            }
            let state = match m.state() {
                State::Alive | State::Suspect => NodeState::Ready,
                State::Down => NodeState::Down,
            };
            let row = rows.entry(id.id).or_insert((id.bump, id.addr, state));
            if id.bump > row.0 {
                *row = (id.bump, id.addr, state);
            }
        }
        let me = self.me();
        rows.insert(me.id, (me.bump, me.addr, NodeState::Ready));
        rows
    }

    pub fn stats(&self) -> MembershipStats {
        MembershipStats {
            members_active: self.foca.num_members(),
            members_listed: self.foca.iter_membership_state().len(),
            descriptions: self.descriptions.len(),
            updates_backlog: self.foca.updates_backlog(),
            broadcast_backlog: self.foca.custom_broadcast_backlog(),
            ..self.stats.clone()
        }
    }

    pub fn handle(&mut self, input: MembershipInput, out: &mut Vec<MembershipEffect>) {
        if self.left {
            return;
        }
        match input {
            MembershipInput::Start => self.start(out),
            MembershipInput::Datagram { from, data } => self.datagram(from, &data, out),
            MembershipInput::Timer(MembershipTimer::Foca(timer)) => {
                let mut rt = Collect {
                    out,
                    notes: &mut self.notes,
                };
                if self.foca.handle_timer(timer, &mut rt).is_err() {
                    self.stats.foca_errors += 1;
                }
            }
            MembershipInput::Timer(MembershipTimer::Rebroadcast) => self.rebroadcast(out),
            MembershipInput::Timer(MembershipTimer::Reannounce) => self.reannounce(out),
            MembershipInput::Timer(MembershipTimer::Gossip) => {
                self.gossip_set = false;
                if self.has_backlog() {
                    self.gossip(out);
                    self.set_gossip(self.config.gossip_period_ms, out);
                }
            }
            MembershipInput::Announce(addr) => {
                if addr != self.me().addr {
                    if self.seeds.len() < SEEDS_MAX {
                        self.seeds.insert(addr);
                    }
                    self.announce(addr, out);
                }
            }
            MembershipInput::Describe(d) => self.describe(d, out),
            MembershipInput::Leave => {
                let mut rt = Collect {
                    out,
                    notes: &mut self.notes,
                };
                if self.foca.leave_cluster(&mut rt).is_err() {
                    self.stats.foca_errors += 1;
                }
                self.left = true;
            }
        }
        self.react(out);
        self.keep_gossiping(out);
    }

    /// Updates or broadcasts wait to be gossiped, and there is someone to gossip them to (a
    /// node alone keeps its own description queued and would otherwise tick for ever).
    fn has_backlog(&self) -> bool {
        self.foca.num_members() > 0
            && (self.foca.updates_backlog() > 0 || self.foca.custom_broadcast_backlog() > 0)
    }

    /// Gossips every `gossip_period_ms` while updates or broadcasts wait, the first time half a
    /// period after they appear (on average when foca's own periodic gossip would have gone).
    /// foca's periodic gossip ticks whether or not there is anything to send: ten timer events
    /// a second on every node, a third of all the events of a quiet 1,000-node simulation.
    fn keep_gossiping(&mut self, out: &mut Vec<MembershipEffect>) {
        if !self.gossip_set && self.has_backlog() {
            self.set_gossip(self.config.gossip_period_ms.div_ceil(2), out);
        }
    }

    fn set_gossip(&mut self, after_ms: u64, out: &mut Vec<MembershipEffect>) {
        self.gossip_set = true;
        out.push(MembershipEffect::Schedule {
            after: Duration::from_millis(after_ms),
            timer: MembershipTimer::Gossip,
        });
    }

    fn start(&mut self, out: &mut Vec<MembershipEffect>) {
        if self.started {
            return;
        }
        self.started = true;
        self.queue_own();
        out.push(MembershipEffect::Schedule {
            after: Duration::from_millis(self.config.rebroadcast_period_ms),
            timer: MembershipTimer::Rebroadcast,
        });
        out.push(MembershipEffect::Schedule {
            after: Duration::from_millis(self.config.announce_period_ms),
            timer: MembershipTimer::Reannounce,
        });
        self.gossip(out);
    }

    fn gossip(&mut self, out: &mut Vec<MembershipEffect>) {
        let mut rt = Collect {
            out,
            notes: &mut self.notes,
        };
        if self
            .foca
            .gossip_to(self.config.gossip_fanout, &mut rt)
            .is_err()
        {
            self.stats.foca_errors += 1;
        }
    }

    fn announce(&mut self, addr: SocketAddr, out: &mut Vec<MembershipEffect>) {
        let mut rt = Collect {
            out,
            notes: &mut self.notes,
        };
        if self.foca.announce(MemberId::seed(addr), &mut rt).is_err() {
            self.stats.foca_errors += 1;
        }
    }

    fn datagram(&mut self, from: Sender, data: &[u8], out: &mut Vec<MembershipEffect>) {
        self.stats.datagrams_in += 1;
        let ok = match data.split_first() {
            _ if data.len() > self.config.max_packet_bytes => false,
            Some((&TAG_FOCA, packet)) => self.foca_packet(from, packet, out),
            Some((&TAG_DESCRIPTION, rest)) => self.direct_description(from, rest, out),
            Some((&TAG_DIGEST, rest)) => self.digest(rest, out),
            Some((&TAG_DOWNS, rest)) => self.down_news(rest, out),
            _ => false,
        };
        if !ok {
            self.stats.datagrams_refused += 1;
        }
    }

    /// A foca packet, believed as far as [`Vet`] allows. When it made us refute a suspicion
    /// (our incarnation grew), every member hears it from us at once: nobody relays a
    /// refutation for us (see `vetting.rs`), and a member that suspected us and does not hear
    /// from us before its suspicion runs out would declare us down.
    fn foca_packet(
        &mut self,
        from: Sender,
        packet: &[u8],
        out: &mut Vec<MembershipEffect>,
    ) -> bool {
        let before = self.foca.incarnation();
        let me = self.foca.identity().clone();
        let mut vet = Vet {
            from,
            me: &me,
            incarnation: before,
            refused: 0,
        };
        self.handler.vouch(Some(from));
        let mut rt = Collect {
            out,
            notes: &mut self.notes,
        };
        let handled = self.foca.handle_data_vetted(packet, &mut vet, &mut rt);
        self.handler.vouch(None);
        self.stats.lies_refused += vet.refused + self.handler.take_refused();
        if self.foca.incarnation() > before {
            let everyone = self.foca.num_members();
            self.stats.foca_errors += u64::from(self.foca.gossip_to(everyone, &mut rt).is_err());
        }
        handled.is_ok()
    }

    fn rebroadcast(&mut self, out: &mut Vec<MembershipEffect>) {
        out.push(MembershipEffect::Schedule {
            after: Duration::from_millis(self.config.rebroadcast_period_ms),
            timer: MembershipTimer::Rebroadcast,
        });
        // Only raised: a node cut off from most of the cluster keeps sizing for all of it.
        let seen = self.foca.num_members() + 1;
        if seen > self.size_hint {
            self.set_cluster_size_hint(seen);
        }
        self.ticks_since_requeue += 1;
        if self.ticks_since_requeue >= MembershipConfig::own_requeue_ticks(self.size_hint) {
            self.ticks_since_requeue = 0;
            self.queue_own();
        }
        self.ticks += 1;
        self.ticks_since_sweep += 1;
        if self.sweep_due || self.ticks_since_sweep >= SWEEP_EVERY_TICKS {
            self.sweep(out);
        }
        self.send_digest(out);
        self.tell_deaths(out);
    }

    /// Forgets descriptions of nodes foca no longer lists (so both stay the same size) and asks
    /// live members whose description we lack, or hold from an older identity, for theirs.
    fn sweep(&mut self, out: &mut Vec<MembershipEffect>) {
        self.ticks_since_sweep = 0;
        let mut listed: Vec<NodeId> = self
            .foca
            .iter_membership_state()
            .map(|m| m.id().id)
            .collect();
        listed.sort_unstable();
        listed.dedup();
        retain_listed(&mut self.descriptions, &listed);
        self.handler.retain_listed(&listed);
        let stale: Vec<SocketAddr> = self
            .foca
            .iter_members()
            .map(|m| m.id())
            .filter(|id| !id.is_seed())
            .filter(|id| {
                self.descriptions
                    .get(&id.id)
                    .is_none_or(|item| item.bump < id.bump)
            })
            .map(|id| id.addr)
            .take(PULLS_PER_TICK)
            .collect();
        // Asked again next tick until they answer.
        self.sweep_due = !stale.is_empty();
        for addr in stale {
            self.push_description(addr, true, out);
        }
    }

    /// A live member picked at random, if we know one.
    fn random_member(&mut self) -> Option<SocketAddr> {
        let active = self.foca.num_members();
        if active == 0 {
            return None;
        }
        let pick = rand::RngExt::random_range(&mut self.rng, 0..active);
        self.foca.iter_members().nth(pick).map(|m| m.id().addr)
    }

    fn reannounce(&mut self, out: &mut Vec<MembershipEffect>) {
        out.push(MembershipEffect::Schedule {
            after: Duration::from_millis(self.config.announce_period_ms),
            timer: MembershipTimer::Reannounce,
        });
        if self.foca.num_members() > 0 {
            return;
        }
        let seeds: Vec<SocketAddr> = self.seeds.iter().copied().collect();
        for addr in seeds {
            self.announce(addr, out);
        }
        let down: Vec<SocketAddr> = self
            .foca
            .iter_membership_state()
            .filter(|m| m.state() == State::Down && !self.seeds.contains(&m.id().addr))
            .map(|m| m.id().addr)
            .collect();
        if !down.is_empty() {
            for i in 0..IDLE_DOWN_ANNOUNCES.min(down.len()) {
                let addr = down[(self.down_cursor + i) % down.len()];
                self.announce(addr, out);
            }
            self.down_cursor = (self.down_cursor + IDLE_DOWN_ANNOUNCES) % down.len();
        }
    }

    /// Whether node `id` is alive or suspect under identity `bump` or a newer one (any identity
    /// for `bump` 0).
    fn is_active_as(&self, id: NodeId, bump: u64) -> bool {
        self.foca
            .iter_members()
            .any(|m| m.id().id == id && m.id().bump >= bump)
    }

    /// Whether the member foca lists at `addr` is node `id`, alive or suspect, under identity
    /// `bump` or a newer one: one lookup, where [`Membership::is_active_as`] visits every member
    /// to find the node at any address.
    fn is_listed_at(&self, addr: SocketAddr, id: NodeId, bump: u64) -> bool {
        self.foca
            .member_at(&addr)
            .is_some_and(|m| m.state() != State::Down && m.id().id == id && m.id().bump >= bump)
    }

    /// Turns foca's notifications and newly arrived descriptions into events and follow-ups.
    fn react(&mut self, out: &mut Vec<MembershipEffect>) {
        let mut notes = std::mem::take(&mut self.notes);
        // Members came, went or renamed: the next tick sweeps the book.
        self.sweep_due |= !notes.is_empty();
        for note in notes.drain(..) {
            match note {
                OwnedNotification::MemberUp(id) if !id.is_seed() => {
                    // A node back at an address is no longer news there.
                    self.down_news.retain(|(dead, _)| dead.addr != id.addr);
                    out.push(MembershipEffect::Event(MembershipEvent::Up(id.id)));
                    // Give the newcomer our description at once rather than hoping gossip
                    // reaches it: ours may have stopped travelling long ago. No reply is
                    // asked: the newcomer sees us Up too and pushes its own the same way, so
                    // a pair costs two datagrams, not four.
                    self.push_description(id.addr, false, out);
                }
                OwnedNotification::MemberDown(id)
                    if !id.is_seed() && !self.is_active_as(id.id, 0) =>
                {
                    out.push(MembershipEffect::Event(MembershipEvent::Down(id.id)));
                    // Only a node gone under every identity we know is news: the old identity
                    // of a node that rejoined tells nobody anything.
                    self.down_news.retain(|(known, _)| *known != id);
                    self.down_news.push_front((id, self.ticks));
                    self.down_news.truncate(DOWN_NEWS_KEPT);
                }
                OwnedNotification::Rename(_, new) if !new.is_seed() => {
                    self.down_news.retain(|(dead, _)| dead.addr != new.addr);
                    // A restart or rejoin: its description may have changed with it.
                    self.push_description(new.addr, true, out);
                }
                OwnedNotification::Rejoin(_) => {
                    self.stats.rejoins += 1;
                    out.push(MembershipEffect::Event(MembershipEvent::Rejoined));
                    // Our description travels with our bump; issue it under the new one.
                    self.queue_own();
                }
                _ => {}
            }
        }
        self.notes = notes;
        for item in self.handler.take_arrived() {
            let d = item.description.clone();
            self.recent.retain(|id| *id != d.id);
            self.recent.push_front(d.id);
            self.recent.truncate(DIGEST_ENTRIES_MAX / 2 - 1);
            self.descriptions.insert(d.id, item);
            out.push(MembershipEffect::Event(MembershipEvent::Described(d)));
        }
    }
}
