//! Virtual time and the event queue.
//!
//! Time is whole milliseconds since the start of the run. Events at the same time come out in
//! the order they were queued (a sequence number breaks ties), so a run never depends on how a
//! queue happens to order equal keys.
//!
//! The queue is a calendar: one bucket per millisecond for the next [`WHEEL_MS`], which is where
//! nearly every event falls (datagrams in flight, probe and gossip timers), and a heap for the
//! few further out (long timers), moved into their bucket as the clock comes within reach. At a
//! thousand nodes a heap of every event cost a tenth of the run in its `pop` alone.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Virtual milliseconds since the start of the run.
pub type Millis = u64;

/// Milliseconds ahead of the clock that have a bucket of their own (a power of two).
pub const WHEEL_MS: Millis = 1 << 14;

/// A queued event's place in the order. The event itself waits in a slot of
/// [`EventQueue::slots`], so buckets and heap move 24-byte keys, not events of a few hundred
/// bytes (a description, a foca timer with its member ID).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    at: Millis,
    seq: u64,
    slot: usize,
}

pub struct EventQueue<E> {
    now: Millis,
    seq: u64,
    /// Events due in `now..now + WHEEL_MS`, in the bucket of their millisecond
    /// (`at % WHEEL_MS`), each bucket in sequence order.
    wheel: Vec<VecDeque<Key>>,
    /// Keys in `wheel`.
    in_wheel: usize,
    /// No event in `wheel` is due before this (a lower bound, kept to skip empty buckets).
    first: Millis,
    /// Events due at `now + WHEEL_MS` or later.
    far: BinaryHeap<Reverse<Key>>,
    /// Queued events by slot; `None` in a free slot.
    slots: Vec<Option<E>>,
    /// Free slots, reused before the slab grows, so it stays as large as the longest queue.
    free: Vec<usize>,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            now: 0,
            seq: 0,
            wheel: (0..WHEEL_MS).map(|_| VecDeque::new()).collect(),
            in_wheel: 0,
            first: 0,
            far: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<E> EventQueue<E> {
    pub fn now(&self) -> Millis {
        self.now
    }

    pub fn len(&self) -> usize {
        self.in_wheel + self.far.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `event` at `at`; a time in the past means now.
    pub fn push(&mut self, at: Millis, event: E) {
        self.seq += 1;
        self.push_as(at, self.seq, event);
    }

    /// Sets aside the next `n` sequence numbers for [`EventQueue::push_as`] and returns the
    /// first: events queued later with them sort as if they had been queued now.
    pub fn reserve(&mut self, n: u64) -> u64 {
        let first = self.seq + 1;
        self.seq += n;
        first
    }

    /// The time of the next event, if any.
    pub fn peek_at(&mut self) -> Option<Millis> {
        self.next_bucket()
            .or_else(|| self.far.peek().map(|k| k.0.at))
    }

    /// Queues `event` at `at` with a sequence number from [`EventQueue::reserve`].
    pub fn push_as(&mut self, at: Millis, seq: u64, event: E) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                self.slots.len() - 1
            }
        };
        let key = Key {
            at: at.max(self.now),
            seq,
            slot,
        };
        if key.at - self.now < WHEEL_MS {
            self.file(key);
        } else {
            self.far.push(Reverse(key));
        }
    }

    /// Takes the next event due at or before `until` and moves the clock to it.
    pub fn pop_until(&mut self, until: Millis) -> Option<(Millis, E)> {
        let at = self.peek_at()?;
        if at > until {
            return None;
        }
        self.move_to(at);
        // The clock is at `at`, so the event is in the wheel now if it was far.
        let key = self.wheel[bucket(at)]
            .pop_front()
            .expect("the next event's bucket holds it");
        self.in_wheel -= 1;
        let event = self.slots[key.slot]
            .take()
            .expect("a queued key points at a filled slot");
        self.free.push(key.slot);
        Some((key.at, event))
    }

    /// Moves the clock forward to `t` (after the events before it were taken), bringing the
    /// far events that come within the wheel's reach into their buckets.
    pub fn advance_to(&mut self, t: Millis) {
        assert!(
            self.peek_at().is_none_or(|next| next >= t),
            "the clock may not pass a queued event"
        );
        self.move_to(t);
    }

    /// [`EventQueue::advance_to`] for a caller that knows no event is due before `t`.
    fn move_to(&mut self, t: Millis) {
        self.now = self.now.max(t);
        self.first = self.first.max(self.now);
        while let Some(Reverse(key)) = self.far.peek().copied() {
            if key.at - self.now >= WHEEL_MS {
                break;
            }
            self.far.pop();
            self.file(key);
        }
    }

    /// The time of the earliest event in the wheel, moving `first` up to it.
    fn next_bucket(&mut self) -> Option<Millis> {
        if self.in_wheel == 0 {
            return None;
        }
        while self.wheel[bucket(self.first)].is_empty() {
            self.first += 1;
        }
        Some(self.first)
    }

    /// Files `key` (due within the wheel's reach) in its bucket, in sequence order.
    fn file(&mut self, key: Key) {
        let b = &mut self.wheel[bucket(key.at)];
        debug_assert!(
            b.front().is_none_or(|k| k.at == key.at),
            "one time per bucket"
        );
        match b.back() {
            Some(last) if last.seq > key.seq => {
                let pos = b.partition_point(|k| k.seq < key.seq);
                b.insert(pos, key);
            }
            _ => b.push_back(key),
        }
        self.in_wheel += 1;
        self.first = self.first.min(key.at);
    }
}

fn bucket(at: Millis) -> usize {
    (at % WHEEL_MS) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_time_events_keep_their_order() {
        let mut q = EventQueue::default();
        q.push(5, "b");
        q.push(1, "a");
        q.push(5, "c");
        q.push(9, "d");
        let got: Vec<_> = std::iter::from_fn(|| q.pop_until(5)).collect();
        assert_eq!(got, vec![(1, "a"), (5, "b"), (5, "c")]);
        assert_eq!(q.len(), 1);
        q.push(0, "late");
        assert_eq!(q.pop_until(100), Some((5, "late")));
    }

    #[test]
    fn reserved_numbers_sort_before_later_pushes_at_the_same_time() {
        let mut q = EventQueue::default();
        let first = q.reserve(10);
        q.push(7, "pushed");
        q.push_as(7, first + 1, "second reserved");
        q.push_as(7, first, "first reserved");
        let got: Vec<_> = std::iter::from_fn(|| q.pop_until(7)).map(|e| e.1).collect();
        assert_eq!(got, vec!["first reserved", "second reserved", "pushed"]);
    }

    /// The calendar gives the order a plain sort by (time, sequence) gives, for events near
    /// and far, pushed while the clock moves, with reserved numbers mixed in.
    #[test]
    fn matches_a_sorted_order_near_and_far() {
        use rand::{RngExt, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(3);
        let mut q = EventQueue::default();
        let mut expected: Vec<(Millis, u64)> = Vec::new();
        let mut got = Vec::new();
        let reserved = q.reserve(1_000);
        let mut next_reserved = reserved;
        let mut seq_of_push = 1_000;
        for round in 0..200u64 {
            for _ in 0..rng.random_range(0..40) {
                let ahead = match rng.random_range(0..10) {
                    0 => rng.random_range(0..5 * WHEEL_MS),
                    1 => 0,
                    _ => rng.random_range(0..300),
                };
                let at = q.now() + ahead;
                let seq = if rng.random_range(0..8) == 0 && next_reserved < reserved + 1_000 {
                    next_reserved += 1;
                    q.push_as(at, next_reserved - 1, next_reserved - 1);
                    next_reserved - 1
                } else {
                    seq_of_push += 1;
                    q.push(at, seq_of_push);
                    seq_of_push
                };
                expected.push((at, seq));
            }
            let until = q.now() + rng.random_range(0..200) + round % 3 * WHEEL_MS;
            while let Some((at, seq)) = q.pop_until(until) {
                got.push((at, seq));
            }
            q.advance_to(until);
        }
        while let Some(e) = q.pop_until(Millis::MAX) {
            got.push(e);
        }
        expected.sort();
        assert_eq!(got, expected);
        assert!(q.is_empty());
    }
}
