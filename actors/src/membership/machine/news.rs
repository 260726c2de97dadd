//! The side channels that repair what gossip missed: digests of the descriptions a member
//! holds (a node that missed a change asks its owner), and news of recent deaths.

use super::*;

/// First byte of a datagram that holds a digest: `TAG_DIGEST | bincode Vec<(NodeId, bump,
/// version)>`, at most [`DIGEST_ENTRIES_MAX`] entries.
pub const TAG_DIGEST: u8 = 0x56;
/// Most entries in one digest: 24 entries of at most 39 bytes fit any accepted packet.
pub const DIGEST_ENTRIES_MAX: usize = 24;
/// First byte of a datagram that holds news of deaths: `TAG_DOWNS | bincode Vec<MemberId>`, at
/// most [`DOWN_NEWS_MAX`] identities the sender learned were Down in its last
/// [`DOWN_NEWS_TICKS`] rebroadcast ticks, sent to [`DOWN_NEWS_FANOUT`] members each tick.
pub const TAG_DOWNS: u8 = 0x58;
/// Most identities in one news of deaths: 8 of at most 57 bytes (an IPv6 address) fit the
/// smallest accepted packet.
pub const DOWN_NEWS_MAX: usize = 8;
/// Rebroadcast ticks a death is told for after we learned it (a minute at the LAN's 5 s).
pub const DOWN_NEWS_TICKS: u64 = 12;
/// Random live members told our news of deaths each rebroadcast tick, while we have some.
pub const DOWN_NEWS_FANOUT: usize = 3;
/// Most deaths kept to tell, newest first (about 50 KB); each datagram tells the next
/// [`DOWN_NEWS_MAX`] of them in turn. Faults make many short-lived deaths: a split cluster
/// declares the other side Down, and those come back under new identities (and leave the list)
/// once it heals. A list shorter than half the cluster would lose real deaths to them.
pub const DOWN_NEWS_KEPT: usize = 1024;
/// Most owners asked for their description because of one digest.
const DIGEST_PULLS_MAX: usize = 4;

impl Membership {
    pub(super) fn send_digest(&mut self, out: &mut Vec<MembershipEffect>) {
        if self.foca.num_members() == 0 {
            return;
        }
        let me = self.me();
        let mut entries = vec![(me.id, me.bump, self.own.version)];
        let rank = |id: &NodeId| {
            let item = self.descriptions.get(id)?;
            Some((*id, item.bump, item.description.version))
        };
        entries.extend(self.recent.iter().filter_map(rank));
        let window: Vec<NodeId> = self
            .descriptions
            .range(self.digest_cursor..)
            .map(|(id, _)| *id)
            .chain(self.descriptions.keys().copied())
            .take(DIGEST_ENTRIES_MAX)
            .collect();
        for id in window {
            if entries.len() >= DIGEST_ENTRIES_MAX {
                break;
            }
            if entries.iter().all(|e| e.0 != id)
                && let Some(entry) = rank(&id)
            {
                entries.push(entry);
            }
            self.digest_cursor = NodeId(id.0.wrapping_add(1));
        }
        let Some(data) = self.tagged(TAG_DIGEST, &entries) else {
            return;
        };
        for _ in 0..MembershipConfig::digest_fanout(self.size_hint) {
            if let Some(to) = self.random_member() {
                out.push(MembershipEffect::Send {
                    to,
                    data: data.clone(),
                });
            }
        }
    }

    /// Tells [`DOWN_NEWS_FANOUT`] random live members the deaths we learned in the last
    /// [`DOWN_NEWS_TICKS`], but for those whose node has come back (a live member at its
    /// address, under a newer identity).
    pub(super) fn tell_deaths(&mut self, out: &mut Vec<MembershipEffect>) {
        let (foca, now) = (&self.foca, self.ticks);
        self.down_news.retain(|(id, learned)| {
            now - learned <= DOWN_NEWS_TICKS
                && foca
                    .member_at(&id.addr)
                    .is_none_or(|m| m.state() == State::Down)
        });
        if self.down_news.is_empty() || self.foca.num_members() == 0 {
            return;
        }
        for _ in 0..DOWN_NEWS_FANOUT {
            let kept = self.down_news.len();
            let start = self.news_cursor % kept;
            let dead: Vec<MemberId> = (0..kept.min(DOWN_NEWS_MAX))
                .map(|k| self.down_news[(start + k) % kept].0.clone())
                .collect();
            self.news_cursor = start + dead.len();
            if let Some(to) = self.random_member()
                && let Some(data) = self.tagged(TAG_DOWNS, &dead)
            {
                out.push(MembershipEffect::Send { to, data });
            }
        }
    }

    /// `tag` then `body` in bincode; `None` (counted) if it does not encode.
    pub(super) fn tagged(&mut self, tag: u8, body: &impl serde::Serialize) -> Option<Bytes> {
        match bincode::serde::encode_to_vec(body, bincode_config()) {
            Ok(body) => {
                let mut data = Vec::with_capacity(body.len() + 1);
                data.push(tag);
                data.extend_from_slice(&body);
                Some(data.into())
            }
            Err(_) => {
                self.stats.foca_errors += 1;
                None
            }
        }
    }

    /// News of deaths: every identity in it is Down, as the sender learned, and so is any older
    /// identity of that node that we still list as alive or suspect at that address. Down is
    /// final for an identity: a node that comes back does so under a newer one, which a stale
    /// death cannot touch. We gossip each death we take on.
    pub(super) fn down_news(&mut self, body: &[u8], out: &mut Vec<MembershipEffect>) -> bool {
        let Some(dead) = decode_list::<MemberId>(body, DOWN_NEWS_MAX) else {
            return false;
        };
        // An identity of the same node at the same address that is not newer is gone too: the
        // dead one superseded it (we may have missed the rejoin in between).
        let news: Vec<Member<MemberId>> = dead
            .iter()
            .filter_map(|id| {
                self.foca.member_at(&id.addr).filter(|m| {
                    m.state() != State::Down && m.id().id == id.id && m.id().bump <= id.bump
                })
            })
            .map(|m| Member::down(m.id().clone()))
            .collect();
        if news.is_empty() {
            return true;
        }
        let mut rt = Collect {
            out,
            notes: &mut self.notes,
        };
        if self
            .foca
            .apply_many(news.into_iter(), true, &mut rt)
            .is_err()
        {
            self.stats.foca_errors += 1;
        }
        true
    }

    /// A digest: ask the owners of descriptions newer than ours for them.
    pub(super) fn digest(&mut self, body: &[u8], out: &mut Vec<MembershipEffect>) -> bool {
        let Some(entries) = decode_list::<(NodeId, u64, u64)>(body, DIGEST_ENTRIES_MAX) else {
            return false;
        };
        let me = self.me().id;
        let wanted: BTreeSet<NodeId> = entries
            .iter()
            .filter(|(id, bump, version)| {
                *id != me
                    && *id != NodeId::UNKNOWN
                    && self
                        .descriptions
                        .get(id)
                        .is_none_or(|item| item.rank() < (*bump, *version))
            })
            .map(|(id, _, _)| *id)
            .take(DIGEST_PULLS_MAX)
            .collect();
        if wanted.is_empty() {
            return true;
        }
        let owners: Vec<SocketAddr> = self
            .foca
            .iter_members()
            .map(|m| m.id())
            .filter(|id| wanted.contains(&id.id))
            .map(|id| id.addr)
            .collect();
        for addr in owners {
            self.push_description(addr, true, out);
        }
        true
    }
}

/// A bincode list that fills `body` exactly and holds at most `max` items (digests, news of
/// deaths); `None` for anything else.
pub(super) fn decode_list<T: serde::de::DeserializeOwned>(
    body: &[u8],
    max: usize,
) -> Option<Vec<T>> {
    let (items, used) =
        bincode::serde::decode_from_slice::<Vec<T>, _>(body, bincode_config()).ok()?;
    (used == body.len() && items.len() <= max).then_some(items)
}
