//! The trace hash: FNV-1a (64 bits) over every delivered event, in delivery order.
//!
//! A fixed, keyless hash, so the value is the same on every run and machine; std's hashers are
//! seeded per process and would not be.

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// Bytes of each datagram that enter the hash: enough to tell messages apart, cheap enough for
/// millions of them. The length always enters.
pub const DATAGRAM_PREFIX_BYTES: usize = 64;

/// What an event in the trace is. Each kind enters the hash as its code; the membership loop and
/// the store loop keep separate traces, so their codes may repeat (and do: they were numbers
/// before they had names, and keeping the numbers keeps every seed's trace hash).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceKind {
    // Membership loop: a machine's inputs.
    Start,
    Datagram,
    FocaTimer,
    RebroadcastTimer,
    ReannounceTimer,
    Announce,
    Describe,
    Leave,
    GossipTimer,
    // Membership loop: what a machine observed.
    Up,
    Down,
    Described,
    Rejoined,
    // Store loop: a store machine's inputs.
    StoreTick,
    RaftMessage,
    Propose,
    ReadIndex,
    AddVoter,
    RemoveVoter,
    // Store loop: a store machine's effects.
    Applied,
    Refused,
    LeaderChanged,
    // Store loop: a router's inputs and effects beside its machine's.
    Forward,
    ForwardDone,
    Retry,
    Answered,
    // Services: a leader's pass, an agent's life and sessions, a task's report.
    Pass,
    AgentStarted,
    SessionSent,
    SessionAnswered,
    SessionFailed,
    TaskReported,
    // Services: secrets and configs sent with an answer, kept and dropped by an agent.
    FilesSent,
    FilesHeld,
    FilesDropped,
    // Services: a routing-mesh table an agent received (its version).
    MeshTable,
    // Either loop: a fault struck.
    Fault,
}

impl TraceKind {
    /// The code that enters the hash.
    pub fn code(self) -> u8 {
        use TraceKind::*;
        match self {
            Start | StoreTick => 1,
            Datagram | RaftMessage => 2,
            FocaTimer | Propose => 3,
            RebroadcastTimer | ReadIndex => 4,
            ReannounceTimer | AddVoter => 5,
            Announce | RemoveVoter => 6,
            Describe => 7,
            Leave => 8,
            GossipTimer => 9,
            Applied => 10,
            Refused => 11,
            LeaderChanged => 12,
            Forward => 13,
            ForwardDone => 14,
            Retry => 15,
            Answered => 16,
            Pass => 60,
            AgentStarted => 70,
            SessionSent => 71,
            SessionAnswered => 72,
            SessionFailed => 73,
            TaskReported => 74,
            FilesSent => 75,
            FilesHeld => 76,
            FilesDropped => 77,
            MeshTable => 78,
            Up => 101,
            Down => 102,
            Described => 103,
            Rejoined => 104,
            Fault => 200,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Trace {
    hash: u64,
    events: u64,
}

impl Default for Trace {
    fn default() -> Self {
        Trace {
            hash: OFFSET,
            events: 0,
        }
    }
}

impl Trace {
    pub fn bytes(&mut self, data: &[u8]) {
        for b in data {
            self.hash ^= u64::from(*b);
            self.hash = self.hash.wrapping_mul(PRIME);
        }
    }

    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// Starts a new event: its time, node and kind.
    pub fn event(&mut self, at: u64, node: usize, kind: TraceKind) {
        self.events += 1;
        self.u64(at);
        self.u64(node as u64);
        self.bytes(&[kind.code()]);
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn events(&self) -> u64 {
        self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_value() {
        let mut t = Trace::default();
        t.bytes(b"a");
        assert_eq!(t.hash(), 0xaf63_dc4c_8601_ec8c);
    }
}
