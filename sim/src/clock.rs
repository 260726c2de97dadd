//! Virtual time and the event queue.
//!
//! Time is whole milliseconds since the start of the run. Events at the same time come out in
//! the order they were queued (a sequence number breaks ties), so a run never depends on how a
//! heap happens to order equal keys.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Virtual milliseconds since the start of the run.
pub type Millis = u64;

/// A queued event's place in the heap. The event itself waits in a slot of
/// [`EventQueue::slots`], so the heap moves 24-byte keys, not events of a few hundred bytes
/// (a description, a foca timer with its member ID).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    at: Millis,
    seq: u64,
    slot: usize,
}

pub struct EventQueue<E> {
    now: Millis,
    seq: u64,
    heap: BinaryHeap<Reverse<Key>>,
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
            heap: BinaryHeap::new(),
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
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
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
    pub fn peek_at(&self) -> Option<Millis> {
        self.heap.peek().map(|k| k.0.at)
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
        self.heap.push(Reverse(Key {
            at: at.max(self.now),
            seq,
            slot,
        }));
    }

    /// Takes the next event due at or before `until` and moves the clock to it.
    pub fn pop_until(&mut self, until: Millis) -> Option<(Millis, E)> {
        if self.heap.peek()?.0.at > until {
            return None;
        }
        // Sequence numbers are unique, so the slot plays no part in the order.
        let Reverse(key) = self.heap.pop()?;
        assert!(key.at >= self.now, "time went backwards");
        self.now = key.at;
        let event = self.slots[key.slot]
            .take()
            .expect("a queued key points at a filled slot");
        self.free.push(key.slot);
        Some((key.at, event))
    }

    /// Moves the clock forward to `t` (after the events before it were taken).
    pub fn advance_to(&mut self, t: Millis) {
        self.now = self.now.max(t);
    }
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
}
