//! Node descriptions beside foca: pushed straight to a member that has just come up, queued
//! for gossip, and checked before they are ours to send.

use super::*;

impl Membership {
    pub(super) fn direct_description(
        &mut self,
        from: Sender,
        rest: &[u8],
        out: &mut Vec<MembershipEffect>,
    ) -> bool {
        let Ok((reply_to, used)) =
            bincode::serde::decode_from_slice::<Option<SocketAddr>, _>(rest, bincode_config())
        else {
            return false;
        };
        let Ok(item) = DescriptionItem::decode(&rest[used..], self.handler.item_bytes_max()) else {
            return false;
        };
        // Only a node itself describes itself, and only in a role its certificate carries.
        if item.description.id != from.id || !role_allowed(from.role, item.description.role) {
            self.stats.lies_refused += 1;
            return false;
        }
        let sender = reply_to.unwrap_or(item.description.addr);
        let id = MemberId {
            id: item.description.id,
            addr: sender,
            bump: item.bump,
        };
        if !address_free_for(&id, self.foca.member_at(&sender)) {
            // Another live node's address: not the sender's to take.
            self.stats.lies_refused += 1;
            return false;
        }
        // Whether it was newer or not, it was well formed; `react` reports a newer one.
        self.handler.offer(&item);
        // A node pushes its description to members it has just seen come up, or asks for ours
        // because it lists us: it is alive. If we do not list it as live under that identity,
        // we take it as a member (without gossiping it: this is news to us, not to the cluster).
        // Otherwise a node that joined or restarted into a large cluster learns a quiet member
        // only from random feeds or when that member's probe round reaches it, which at 200
        // nodes takes longer than the 10 s a heal allows and at 1,000 nodes minutes. A node we
        // hold Down under that identity stays Down: foca never revives a Down identity.
        if sender != self.me().addr && !self.is_listed_at(sender, item.description.id, item.bump) {
            let mut rt = Collect {
                out,
                notes: &mut self.notes,
            };
            if self
                .foca
                .apply_many(std::iter::once(Member::alive(id)), false, &mut rt)
                .is_err()
            {
                self.stats.foca_errors += 1;
            }
        }
        if let Some(to) = reply_to
            && to != self.me().addr
        {
            self.push_description(to, false, out);
        }
        true
    }

    /// Sends our description straight to `to`, asking for theirs in return if `want_reply`.
    pub(super) fn push_description(
        &mut self,
        to: SocketAddr,
        want_reply: bool,
        out: &mut Vec<MembershipEffect>,
    ) {
        let reply_to = want_reply.then_some(self.me().addr);
        let head = bincode::serde::encode_to_vec(reply_to, bincode_config());
        let item = self.own_item().encode();
        match (head, item) {
            (Ok(head), Ok(item)) => {
                let mut data = Vec::with_capacity(1 + head.len() + item.len());
                data.push(TAG_DESCRIPTION);
                data.extend_from_slice(&head);
                data.extend_from_slice(&item);
                out.push(MembershipEffect::Send {
                    to,
                    data: data.into(),
                });
            }
            // Our description was checked when it was set, so this is a bug worth counting.
            _ => self.stats.foca_errors += 1,
        }
    }

    pub(super) fn own_item(&self) -> DescriptionItem {
        DescriptionItem {
            bump: self.me().bump,
            description: self.own.clone(),
        }
    }

    /// Puts our description (again) on foca's broadcast queue.
    pub(super) fn queue_own(&mut self) {
        let queued = self
            .own_item()
            .encode()
            .map_err(|_| ())
            .and_then(|data| self.foca.add_broadcast(&data).map_err(|_| ()));
        if queued.is_err() {
            self.stats.foca_errors += 1;
        }
    }

    pub(super) fn describe(&mut self, mut d: NodeDescription, out: &mut Vec<MembershipEffect>) {
        d.version = d.version.max(self.own.version.saturating_add(1));
        if self.check_description(&d).is_err() {
            self.stats.descriptions_refused += 1;
            return;
        }
        self.own = d;
        self.queue_own();
        self.gossip(out);
        // Nobody relays a description for its node (see `vetting.rs`): every live member gets
        // the change from us directly. Changes are rare (labels, role, resources).
        let live: Vec<SocketAddr> = self.foca.iter_members().map(|m| m.id().addr).collect();
        for to in live {
            self.push_description(to, false, out);
        }
    }
}

pub(super) fn check_description(
    me: &MemberId,
    d: &NodeDescription,
    item_bytes_max: usize,
) -> Result<(), MembershipError> {
    d.validate()?;
    if d.id != me.id {
        return Err(MembershipError::DescriptionNotOurs {
            expected: me.id,
            got: d.id,
        });
    }
    let bytes = DescriptionItem {
        bump: me.bump,
        description: d.clone(),
    }
    .encode()
    .map_err(MembershipError::Encode)?
    .len();
    if bytes > item_bytes_max {
        return Err(MembershipError::DescriptionTooLarge {
            bytes,
            max: item_bytes_max,
        });
    }
    Ok(())
}
