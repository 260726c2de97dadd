//! [`StoreMachine`]: one manager's raft node and state machine, driven by inputs.
//!
//! Each [`StoreMachine::handle`] feeds raft-rs one input and then runs its Ready loop:
//!
//! ```text
//!   snapshot from the leader → storage, state restored
//!   new entries, hard state  → storage, then sync          (before any message leaves)
//!   messages                 → StoreEffect::Send
//!   committed entries        → StoreState::apply, in order → StoreEffect::Applied
//!   read states              → StoreEffect::ReadReady once applied reaches their index
//!   every N applied entries  → snapshot, log compacted
//! ```
//!
//! Proposals and reads are taken only on the leader; elsewhere they are refused at once with
//! `NotLeader` (the caller forwards them). A pending request is always answered: applied,
//! ready, or refused when leadership is lost, when it times out, or when the machine fails.
//!
//! Determinism: raft-rs draws its randomized election timeout with `thread_rng` whenever it
//! resets (a new term or role). The machine draws a fresh one from its own seeded RNG right after
//! every such change and sets it, so timeouts are still re-randomized at each election (two
//! survivors with equal fixed timeouts would split their votes forever) and the same seed gives
//! the same run.

use std::collections::BTreeMap;

use raft::eraftpb::{ConfChange, ConfChangeType, MessageType, Snapshot};
use raft::{ProgressState, RawNode, SnapshotStatus, StateRole};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::codec::{
    Decoded, decode_entry, decode_message, encode_command, encode_member, encode_message,
    snapshot_restores,
};
use super::events::{Bootstrap, StoreEffect, StoreInput, StoreStats};
use super::state::{Member, StoreCommand, StoreState, check_command};
use super::{LogStorage, StoreConfig, StoreError};

struct Pending {
    req: u64,
    /// The term the entry was proposed in: an entry applied at this index with another term
    /// is someone else's.
    term: u64,
    deadline_ms: u64,
    conf: bool,
}

struct PendingRead {
    deadline_ms: u64,
    /// Handed to raft. A leader that has not committed an entry of its own term yet would
    /// drop the request without a word (raft-rs answers read-index requests only after that),
    /// so until then the read waits here.
    asked: bool,
    /// Set when raft says at which commit index the read is safe.
    index: Option<u64>,
}

pub struct StoreMachine<S: LogStorage> {
    raw: RawNode<S>,
    /// Draws each election timeout, in place of raft-rs's `thread_rng`.
    election_rng: StdRng,
    /// Term and role when the timeout was last drawn: a change means raft-rs reset it.
    election_seen: (u64, StateRole),
    id: u64,
    config: StoreConfig,
    state: StoreState,
    /// Proposals by log index.
    pending: BTreeMap<u64, Pending>,
    reads: BTreeMap<u64, PendingRead>,
    leader: Option<u64>,
    term: u64,
    /// The term in which this node last became leader, while it still is.
    led_term: Option<u64>,
    voters: Vec<u64>,
    /// When a snapshot was last sent to each peer: raft-rs waits for it forever if it is lost.
    snapshot_sent_ms: BTreeMap<u64, u64>,
    applied_since_snapshot: u64,
    /// Snapshot at the end of this step regardless of the count (after a voter change).
    snapshot_due: bool,
    now_ms: u64,
    failed: Option<String>,
    stats: StoreStats,
}

impl<S: LogStorage> StoreMachine<S> {
    pub fn new(
        raft_id: u64,
        mut storage: S,
        config: StoreConfig,
        rng_seed: u64,
        bootstrap: Bootstrap,
    ) -> Result<Self, StoreError> {
        config.validate()?;
        if raft_id == 0 {
            return Err(StoreError::Invalid("raft ID 0 is reserved".into()));
        }
        let mut rng = StdRng::seed_from_u64(rng_seed);
        let timeout = rng.random_range(config.election_ticks..2 * config.election_ticks);
        let election_rng = StdRng::seed_from_u64(rng.random());
        let initial = storage
            .initial_state()
            .map_err(|e| StoreError::Storage(e.to_string()))?;
        let empty = !initial.initialized()
            && storage
                .last_index()
                .map_err(|e| StoreError::Storage(e.to_string()))?
                == 0;
        let mut campaign = false;
        match &bootstrap {
            Bootstrap::NewCluster { node_id, addr } => {
                if !empty {
                    return Err(StoreError::Invalid(
                        "the storage already holds a cluster; restart from it".into(),
                    ));
                }
                let mut state = StoreState::new();
                let member = Member {
                    node_id: *node_id,
                    addr: *addr,
                };
                state.set_member(1, raft_id, Some(member));
                // Index 1 is a snapshot, so a joiner with an empty log is sent it first and
                // every member starts from the same state.
                let mut snap = Snapshot::default();
                snap.data = state.snapshot()?.into();
                snap.mut_metadata().index = 1;
                snap.mut_metadata().term = 1;
                snap.mut_metadata().mut_conf_state().voters = vec![raft_id];
                storage.apply_snapshot(&snap)?;
                storage.sync()?;
                campaign = true;
            }
            Bootstrap::Join if !empty => {
                return Err(StoreError::Invalid(
                    "the storage already holds a cluster; restart from it".into(),
                ));
            }
            Bootstrap::Join | Bootstrap::Restart => {}
        }
        let state = match storage.latest_snapshot()? {
            Some(s) => StoreState::restore(&s.data)?,
            None => StoreState::new(),
        };
        let cfg = raft::Config {
            id: raft_id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            min_election_tick: config.election_ticks,
            max_election_tick: 2 * config.election_ticks,
            applied: state.applied_index(),
            max_size_per_msg: config.max_size_per_msg_bytes,
            max_inflight_msgs: config.max_inflight_msgs,
            check_quorum: config.check_quorum,
            pre_vote: config.pre_vote,
            ..Default::default()
        };
        cfg.validate().map_err(|_| StoreError::Config {
            field: "election_ticks",
            reason: "raft-rs refused the derived config",
        })?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut raw =
            RawNode::new(&cfg, storage, &logger).map_err(|e| StoreError::Storage(e.to_string()))?;
        if campaign {
            // A cluster of one elects itself at once rather than after a timeout.
            raw.campaign()
                .map_err(|e| StoreError::Storage(e.to_string()))?;
        }
        raw.raft.set_randomized_election_timeout(timeout);
        let mut m = StoreMachine {
            raw,
            election_rng,
            election_seen: (0, StateRole::Follower),
            id: raft_id,
            config,
            state,
            pending: BTreeMap::new(),
            reads: BTreeMap::new(),
            leader: None,
            term: 0,
            led_term: None,
            voters: Vec::new(),
            snapshot_sent_ms: BTreeMap::new(),
            applied_since_snapshot: 0,
            snapshot_due: false,
            now_ms: 0,
            failed: None,
            stats: StoreStats::default(),
        };
        m.voters = m.conf_voters();
        m.election_seen = (m.raw.raft.term, m.raw.raft.state);
        Ok(m)
    }

    pub fn handle(&mut self, now_ms: u64, input: StoreInput, out: &mut Vec<StoreEffect>) {
        self.now_ms = self.now_ms.max(now_ms);
        if let Some(why) = &self.failed {
            if let Some(req) = request_of(&input) {
                self.stats.requests_refused += 1;
                out.push(StoreEffect::Refused {
                    req,
                    error: StoreError::Failed(why.clone()),
                });
            }
            return;
        }
        if let Err(e) = self.take(input, out).and_then(|()| self.process_ready(out)) {
            self.fail(e, out);
        }
        self.redraw_election_timeout();
    }

    /// After raft-rs reset its election timeout (a new term or role), replaces it with a draw
    /// from this machine's seeded RNG.
    fn redraw_election_timeout(&mut self) {
        let now = (self.raw.raft.term, self.raw.raft.state);
        if now != self.election_seen {
            let ticks = self.config.election_ticks;
            let t = self.election_rng.random_range(ticks..2 * ticks);
            self.raw.raft.set_randomized_election_timeout(t);
            self.election_seen = now;
        }
    }

    /// The local replica: reads may be stale on a follower (use `ReadIndex` for fresh ones).
    pub fn state(&self) -> &StoreState {
        &self.state
    }

    pub fn leader(&self) -> Option<u64> {
        self.leader
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    pub fn voters(&self) -> Vec<u64> {
        self.voters.clone()
    }

    /// Voters' node IDs and addresses, as the log says.
    pub fn members(&self) -> &BTreeMap<u64, Member> {
        self.state.members()
    }

    pub fn raft_id(&self) -> u64 {
        self.id
    }

    pub fn storage(&self) -> &S {
        self.raw.store()
    }

    pub fn stats(&self) -> StoreStats {
        let log = &self.raw.raft.raft_log;
        StoreStats {
            raft_id: self.id,
            term: self.term,
            leader: self.leader,
            applied_index: self.state.applied_index(),
            commit_index: log.committed,
            first_index: log.first_index(),
            last_index: log.last_index(),
            pending_proposals: self.pending.len(),
            pending_reads: self.reads.len(),
            ..self.stats.clone()
        }
    }

    fn take(&mut self, input: StoreInput, out: &mut Vec<StoreEffect>) -> Result<(), StoreError> {
        match input {
            StoreInput::Tick => {
                self.raw.tick();
                self.expire(out);
                self.retry_snapshots();
            }
            StoreInput::Message { from, bytes } => {
                let ok = match decode_message(&bytes) {
                    Ok(msg)
                        if msg.to == self.id
                            && msg.from == from
                            && !raft::raw_node::is_local_msg(msg.get_msg_type())
                            && snapshot_restores(&msg) =>
                    {
                        self.raw.step(msg).is_ok()
                    }
                    _ => false,
                };
                if !ok {
                    self.stats.messages_refused += 1;
                }
            }
            StoreInput::Propose { req, cmd } => {
                if let Err(error) = self.propose(req, &cmd) {
                    self.refuse(req, error, out);
                }
            }
            StoreInput::ReadIndex { req } => {
                if let Err(error) = self.admit().and_then(|()| {
                    if self.reads.contains_key(&req) {
                        return Err(StoreError::Invalid(format!(
                            "read {req} is already waiting"
                        )));
                    }
                    Ok(())
                }) {
                    self.refuse(req, error, out);
                } else {
                    let deadline_ms = self.now_ms + self.config.request_timeout_ms;
                    self.reads.insert(
                        req,
                        PendingRead {
                            deadline_ms,
                            asked: false,
                            index: None,
                        },
                    );
                    self.ask_reads();
                }
            }
            StoreInput::AddVoter {
                req,
                raft_id,
                node_id,
                addr,
            } => {
                let mut cc = ConfChange::default();
                cc.set_change_type(ConfChangeType::AddNode);
                cc.node_id = raft_id;
                cc.context = encode_member(&Member { node_id, addr })?.into();
                if let Err(error) = self.propose_conf(req, cc) {
                    self.refuse(req, error, out);
                }
            }
            StoreInput::RemoveVoter { req, raft_id } => {
                let result = if !self.voters.contains(&raft_id) {
                    Err(StoreError::Invalid(format!(
                        "raft ID {raft_id} is not a voter"
                    )))
                } else if self.voters.len() == 1 {
                    Err(StoreError::Invalid(
                        "the last voter cannot be removed".into(),
                    ))
                } else {
                    let mut cc = ConfChange::default();
                    cc.set_change_type(ConfChangeType::RemoveNode);
                    cc.node_id = raft_id;
                    self.propose_conf(req, cc)
                };
                if let Err(error) = result {
                    self.refuse(req, error, out);
                }
            }
        }
        Ok(())
    }

    /// Whether a new request may be taken: on the leader, within the bound.
    fn admit(&self) -> Result<(), StoreError> {
        if !self.is_leader() {
            let leader = Some(self.raw.raft.leader_id).filter(|&l| l != 0);
            return Err(StoreError::NotLeader { leader });
        }
        if self.pending.len() + self.reads.len() >= self.config.proposals_pending_max {
            return Err(StoreError::Busy);
        }
        Ok(())
    }

    fn propose(&mut self, req: u64, cmd: &StoreCommand) -> Result<(), StoreError> {
        self.admit()?;
        check_command(cmd)?;
        let data = encode_command(cmd)?;
        let before = self.raw.raft.raft_log.last_index();
        self.raw
            .propose(vec![], data)
            .map_err(|_| StoreError::Busy)?;
        self.track(req, before, false)
    }

    fn propose_conf(&mut self, req: u64, cc: ConfChange) -> Result<(), StoreError> {
        self.admit()?;
        if self.raw.raft.has_pending_conf() {
            return Err(StoreError::Busy);
        }
        let before = self.raw.raft.raft_log.last_index();
        self.raw
            .propose_conf_change(vec![], cc)
            .map_err(|_| StoreError::Busy)?;
        self.track(req, before, true)
    }

    fn track(&mut self, req: u64, before: u64, conf: bool) -> Result<(), StoreError> {
        let index = self.raw.raft.raft_log.last_index();
        if index == before {
            return Err(StoreError::Busy);
        }
        let pending = Pending {
            req,
            term: self.raw.raft.term,
            deadline_ms: self.now_ms + self.config.request_timeout_ms,
            conf,
        };
        self.pending.insert(index, pending);
        Ok(())
    }

    fn refuse(&mut self, req: u64, error: StoreError, out: &mut Vec<StoreEffect>) {
        self.stats.requests_refused += 1;
        out.push(StoreEffect::Refused { req, error });
    }

    fn expire(&mut self, out: &mut Vec<StoreEffect>) {
        let now = self.now_ms;
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline_ms <= now)
            .map(|(i, _)| *i)
            .collect();
        for i in late {
            if let Some(p) = self.pending.remove(&i) {
                self.refuse(p.req, StoreError::Timeout, out);
            }
        }
        let late: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, r)| r.deadline_ms <= now)
            .map(|(req, _)| *req)
            .collect();
        for req in late {
            self.reads.remove(&req);
            self.refuse(req, StoreError::Timeout, out);
        }
    }

    /// raft-rs keeps a follower in snapshot state until it hears back; if the snapshot was lost
    /// it would wait forever, so after an election timeout and a half report it failed.
    fn retry_snapshots(&mut self) {
        let wait_ms = self.config.tick_ms * self.config.election_ticks as u64 * 3 / 2;
        let now = self.now_ms;
        let due: Vec<u64> = self
            .snapshot_sent_ms
            .iter()
            .filter(|(_, at)| now >= *at + wait_ms)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            self.snapshot_sent_ms.remove(&peer);
            let stuck = self
                .raw
                .raft
                .prs()
                .get(peer)
                .is_some_and(|p| p.state == ProgressState::Snapshot);
            if stuck && self.is_leader() {
                self.raw.report_snapshot(peer, SnapshotStatus::Failure);
            }
        }
    }

    fn send(
        &mut self,
        msgs: Vec<raft::eraftpb::Message>,
        out: &mut Vec<StoreEffect>,
    ) -> Result<(), StoreError> {
        for m in msgs {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.snapshot_sent_ms.insert(m.to, self.now_ms);
            }
            out.push(StoreEffect::Send {
                to: m.to,
                msg: encode_message(&m)?,
            });
        }
        Ok(())
    }

    /// Hands raft the reads waiting for this leader's first commit in its term, once it has
    /// made it; whether it handed any.
    fn ask_reads(&mut self) -> bool {
        // Cheapest first: this runs after every input, and the commit check reads the log.
        if !self.reads.values().any(|r| !r.asked)
            || !self.is_leader()
            || !self.raw.raft.commit_to_current_term()
        {
            return false;
        }
        let mut asked = false;
        for (req, r) in self.reads.iter_mut().filter(|(_, r)| !r.asked) {
            self.raw.read_index(req.to_be_bytes().to_vec());
            r.asked = true;
            asked = true;
        }
        asked
    }

    fn process_ready(&mut self, out: &mut Vec<StoreEffect>) -> Result<(), StoreError> {
        loop {
            self.ready_loop(out)?;
            if !self.ask_reads() {
                break;
            }
        }
        self.observe_leadership(out);
        self.answer_reads(out);
        self.maybe_snapshot()
    }

    fn ready_loop(&mut self, out: &mut Vec<StoreEffect>) -> Result<(), StoreError> {
        while self.raw.has_ready() {
            let mut rd = self.raw.ready();
            let mut wrote = false;
            if !rd.snapshot().is_empty() {
                let snap = rd.snapshot().clone();
                // Decoded before it is stored: a snapshot that does not restore never replaces
                // the log.
                let state = StoreState::restore(&snap.data)?;
                self.raw.mut_store().apply_snapshot(&snap)?;
                self.state = state;
                self.applied_since_snapshot = 0;
                self.stats.snapshots_installed += 1;
                let mut voters = snap.get_metadata().get_conf_state().voters.clone();
                voters.sort_unstable();
                if voters != self.voters {
                    self.voters = voters.clone();
                    out.push(StoreEffect::VotersChanged(voters));
                }
                wrote = true;
            }
            if !rd.entries().is_empty() {
                self.raw.mut_store().append(rd.entries())?;
                wrote = true;
            }
            if let Some(hs) = rd.hs() {
                self.raw.mut_store().set_hard_state(hs)?;
                wrote = true;
            }
            if wrote {
                // Nothing leaves before what it promises is on disk.
                self.raw.mut_store().sync()?;
            }
            self.send(rd.take_messages(), out)?;
            self.send(rd.take_persisted_messages(), out)?;
            for rs in rd.take_read_states() {
                let Ok(bytes) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) else {
                    continue;
                };
                if let Some(r) = self.reads.get_mut(&u64::from_be_bytes(bytes)) {
                    r.index = Some(rs.index);
                }
            }
            self.apply(rd.take_committed_entries(), out)?;
            let mut light = self.raw.advance(rd);
            if let Some(commit) = light.commit_index() {
                let mut hs = self.raw.raft.hard_state();
                hs.commit = commit;
                // Losing this in a crash is harmless: the commit index is learned again.
                self.raw.mut_store().set_hard_state(&hs)?;
            }
            self.send(light.take_messages(), out)?;
            self.apply(light.take_committed_entries(), out)?;
            self.raw.advance_apply();
        }
        Ok(())
    }

    fn apply(
        &mut self,
        entries: Vec<raft::eraftpb::Entry>,
        out: &mut Vec<StoreEffect>,
    ) -> Result<(), StoreError> {
        for e in entries {
            if e.index <= self.state.applied_index() {
                continue;
            }
            let mut conf_applied = false;
            self.state.record_entry(e.index, e.term, &e.data);
            let result = match decode_entry(&e) {
                Ok(Decoded::Empty) => {
                    self.state.mark_applied(e.index);
                    Ok(())
                }
                Ok(Decoded::Command(cmd)) => self.state.apply(e.index, &cmd),
                Ok(Decoded::Voters { change, member }) => {
                    let cs = self
                        .raw
                        .apply_conf_change(&change)
                        .map_err(|e| StoreError::Storage(e.to_string()))?;
                    self.raw.mut_store().set_conf_state(&cs)?;
                    let add = change.get_change_type() == ConfChangeType::AddNode;
                    self.state
                        .set_member(e.index, change.node_id, member.filter(|_| add));
                    let mut voters = cs.voters.clone();
                    voters.sort_unstable();
                    if voters != self.voters {
                        self.voters = voters.clone();
                        out.push(StoreEffect::VotersChanged(voters));
                    }
                    conf_applied = true;
                    // A new voter is sent a snapshot that must already name it (raft-rs
                    // refuses one that does not), so take one now.
                    self.snapshot_due = true;
                    Ok(())
                }
                // Every replica refuses a damaged entry the same way.
                Err(err) => {
                    self.state.mark_applied(e.index);
                    Err(err)
                }
            };
            self.stats.entries_applied += 1;
            self.applied_since_snapshot += 1;
            let req = match self.pending.remove(&e.index) {
                // raft-rs turns a voter change it cannot take into an empty entry.
                Some(p) if p.term == e.term && p.conf && !conf_applied => {
                    self.refuse(p.req, StoreError::Busy, out);
                    None
                }
                Some(p) if p.term == e.term => Some(p.req),
                Some(p) => {
                    let leader = self.leader;
                    self.refuse(p.req, StoreError::LeadershipLost { leader }, out);
                    None
                }
                None => None,
            };
            out.push(StoreEffect::Applied {
                req,
                index: e.index,
                result,
            });
        }
        Ok(())
    }

    fn observe_leadership(&mut self, out: &mut Vec<StoreEffect>) {
        let leader = Some(self.raw.raft.leader_id).filter(|&l| l != 0);
        let term = self.raw.raft.term;
        if leader != self.leader || (leader.is_some() && term != self.term) {
            out.push(StoreEffect::LeaderChanged { leader, term });
        }
        self.leader = leader;
        self.term = term;
        let leading = self.is_leader().then_some(term);
        if self.led_term.is_some() && self.led_term != leading {
            // Whatever we were waiting for may or may not commit under the next leader.
            let pending = std::mem::take(&mut self.pending);
            for p in pending.into_values() {
                self.refuse(p.req, StoreError::LeadershipLost { leader }, out);
            }
            let reads = std::mem::take(&mut self.reads);
            for req in reads.into_keys() {
                self.refuse(req, StoreError::LeadershipLost { leader }, out);
            }
        }
        self.led_term = leading;
    }

    fn answer_reads(&mut self, out: &mut Vec<StoreEffect>) {
        let applied = self.state.applied_index();
        let ready: Vec<(u64, u64)> = self
            .reads
            .iter()
            .filter_map(|(req, r)| r.index.filter(|&i| i <= applied).map(|i| (*req, i)))
            .collect();
        for (req, index) in ready {
            self.reads.remove(&req);
            out.push(StoreEffect::ReadReady { req, index });
        }
    }

    fn maybe_snapshot(&mut self) -> Result<(), StoreError> {
        if self.applied_since_snapshot < self.config.snapshot_every_entries && !self.snapshot_due {
            return Ok(());
        }
        self.snapshot_due = false;
        let index = self.state.applied_index();
        let store = self.raw.store();
        let term =
            raft::Storage::term(store, index).map_err(|e| StoreError::Storage(e.to_string()))?;
        let conf = raft::Storage::initial_state(store)
            .map_err(|e| StoreError::Storage(e.to_string()))?
            .conf_state;
        let mut snap = Snapshot::default();
        snap.data = self.state.snapshot()?.into();
        snap.mut_metadata().index = index;
        snap.mut_metadata().term = term;
        snap.mut_metadata().set_conf_state(conf);
        self.raw.mut_store().compact(&snap)?;
        self.applied_since_snapshot = 0;
        self.stats.snapshots_made += 1;
        Ok(())
    }

    fn conf_voters(&self) -> Vec<u64> {
        let mut v = raft::Storage::initial_state(self.raw.store())
            .map(|s| s.conf_state.voters)
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    fn fail(&mut self, e: StoreError, out: &mut Vec<StoreEffect>) {
        let why = e.to_string();
        let pending = std::mem::take(&mut self.pending);
        let reads = std::mem::take(&mut self.reads);
        for req in pending
            .into_values()
            .map(|p| p.req)
            .chain(reads.into_keys())
        {
            self.refuse(req, StoreError::Failed(why.clone()), out);
        }
        self.failed = Some(why);
    }
}

fn request_of(input: &StoreInput) -> Option<u64> {
    match input {
        StoreInput::Propose { req, .. }
        | StoreInput::ReadIndex { req }
        | StoreInput::AddVoter { req, .. }
        | StoreInput::RemoveVoter { req, .. } => Some(*req),
        StoreInput::Tick | StoreInput::Message { .. } => None,
    }
}
