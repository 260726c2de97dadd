//! Membership datagrams (foca packets through `BincodeCodec`, description items, digests, news
//! of deaths) handed to a started `Membership` machine, several per input, then a rebroadcast
//! and a gossip tick so that whatever the datagrams left behind is acted on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarm_actors::membership::{MembershipInput, MembershipTimer};
use swarm_node_fuzz::{deliver, membership, pieces};

fuzz_target!(|data: &[u8]| {
    // A fresh machine per input keeps every crash reproducible from its input alone.
    let mut m = membership();
    let mut out = Vec::new();
    for datagram in pieces(data).take(16) {
        deliver(&mut m, datagram, &mut out);
    }
    m.handle(
        MembershipInput::Timer(MembershipTimer::Rebroadcast),
        &mut out,
    );
    m.handle(MembershipInput::Timer(MembershipTimer::Gossip), &mut out);
    let _ = m.members();
});
