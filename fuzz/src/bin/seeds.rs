//! Writes the seed corpora (`fuzz/seeds/<target>/`): a few real encodings per target, so the
//! fuzzer starts from messages nodes actually send. `cargo fuzz build` builds it with the
//! targets; after a protocol change run `target/x86_64-unknown-linux-gnu/release/seeds` from
//! `fuzz/` and commit what changed.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use raft::eraftpb::{Entry, Message, MessageType};
use rand::SeedableRng;
use swarm_actors::replica::chunks::{RaftChunk, split};
use swarm_actors::membership::{
    Membership, MembershipConfig, MembershipEffect, MembershipInput, Sender,
};
use swarm_actors::model::{NodeId, Role};
use swarm_actors::node::{Authority, CERT_VALIDITY};
use swarm_actors::store::{Expect, Kind, ObjectBody, Op, StoreCommand, StoreState, encode_message};
use swarm_actors::trust::NodeKey;
use swarm_actors::wire::{JoinRequest, OneWay, Request, Response, encode_frame};
use swarm_node_fuzz::proto::{ControlRequest, ServiceChange};
// Built with the targets' coverage instrumentation, which calls into libFuzzer.
use libfuzzer_sys as _;
use swarm_node_fuzz::{description, join_pieces, member_addr, member_id, spec_template};

fn body<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    encode_frame(msg).expect("a seed encodes")[4..].to_vec()
}

fn write(target: &str, seeds: &[(&str, Vec<u8>)]) {
    let dir = Path::new("seeds").join(target);
    fs::create_dir_all(&dir).expect("seed directory");
    for (name, bytes) in seeds {
        fs::write(dir.join(name), bytes).expect("seed file");
    }
}

/// Datagrams node 1 receives while nodes 1 and 2 join each other and gossip for a while.
fn datagrams() -> Vec<Vec<u8>> {
    let mut one = swarm_node_fuzz::membership();
    let mut two = Membership::new(member_id(2, 0), description(2), MembershipConfig::lan(), 9)
        .expect("node 2");
    let mut to_one = Vec::new();
    let mut out = Vec::new();
    two.handle(MembershipInput::Start, &mut out);
    two.handle(MembershipInput::Announce(member_addr(1)), &mut out);
    for _ in 0..6 {
        let mut back = Vec::new();
        for e in out.drain(..) {
            if let MembershipEffect::Send { to, data } = e
                && to == member_addr(1)
            {
                to_one.push(data.to_vec());
                let from = sender(2);
                one.handle(MembershipInput::Datagram { from, data }, &mut back);
            }
        }
        for e in back {
            if let MembershipEffect::Send { data, .. } = e {
                let from = sender(1);
                two.handle(MembershipInput::Datagram { from, data }, &mut out);
            }
        }
    }
    to_one
}

fn main() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let authority = Authority::generate(now, CERT_VALIDITY, &mut rng).expect("a CA");
    let key = NodeKey::generate().expect("a key");
    let csr = key.csr_der().expect("a CSR");
    let (cert, _intermediates) = authority
        .renew(NodeId(7), Role::Worker, &csr, now)
        .expect("a certificate");
    let addr: SocketAddr = "10.0.0.9:2377".parse().expect("an address");
    let join = Request::Join(JoinRequest {
        token: authority.tokens().worker.to_string(),
        csr_der: csr.clone(),
        hostname: "node-9".into(),
        addr,
    });

    let mut raft_msg = Message::default();
    raft_msg.set_msg_type(MessageType::MsgAppend);
    raft_msg.to = 1;
    raft_msg.from = 2;
    let command = StoreCommand {
        now_ms: 1,
        ops: vec![Op::Put {
            kind: Kind::Service,
            id: "s1".into(),
            expect: Expect::Absent,
            body: ObjectBody::Service(swarm_actors::model::Service {
                vips: Vec::new(),
                id: swarm_actors::model::ServiceId(1),
                spec: spec_template(),
                previous_spec: None,
                previous_spec_version: None,
                update_status: None,
                spec_version: 1,
            }),
        }],
    };
    let command_bytes =
        bincode::serde::encode_to_vec(&command, bincode::config::standard()).expect("command");
    let entry = Entry {
        index: 1,
        term: 1,
        data: command_bytes.clone().into(),
        ..Default::default()
    };
    raft_msg.mut_entries().push(entry);
    let raft_bytes = encode_message(&raft_msg).expect("raft message");
    let mut state = StoreState::new();
    state.apply(1, &command).expect("a valid command");
    let snapshot = state.snapshot().expect("a snapshot");

    write(
        "wire_frame",
        &[
            ("ping", body(&Request::Ping)),
            ("join", body(&join)),
            ("pong", body(&Response::Pong)),
            (
                "not_leader",
                body(&Response::NotLeader { leader: Some(addr) }),
            ),
            ("removed", body(&OneWay::Removed(NodeId(7)))),
            (
                "stream",
                [
                    encode_frame(&Request::Ping).unwrap(),
                    encode_frame(&join).unwrap(),
                ]
                .concat(),
            ),
        ],
    );
    let grams = datagrams();
    write(
        "membership_datagram",
        &[
            ("first", join_pieces(&grams[..1])),
            ("exchange", join_pieces(&grams[..grams.len().min(6)])),
        ],
    );
    let chunks: Vec<Vec<u8>> = split(2, 1, &raft_bytes)
        .iter()
        .map(|c| body(&OneWay::Raft(c.clone())))
        .collect();
    let halves: Vec<Vec<u8>> = (0..2)
        .map(|i| {
            let half = raft_bytes.len() / 2;
            let bytes = if i == 0 {
                &raft_bytes[..half]
            } else {
                &raft_bytes[half..]
            };
            body(&OneWay::Raft(RaftChunk {
                from: 2,
                message: 2,
                index: i,
                total: 2,
                bytes: bytes.to_vec(),
            }))
        })
        .collect();
    write(
        "raft_chunks",
        &[
            ("whole", join_pieces(&chunks)),
            ("halves", join_pieces(&halves)),
        ],
    );
    write(
        "join_token",
        &[
            ("worker", authority.tokens().worker.to_string().into_bytes()),
            (
                "digest",
                authority.tokens().worker.ca_digest.to_string().into_bytes(),
            ),
        ],
    );
    write("csr", &[("csr", csr.clone())]);
    write(
        "certificate",
        &[
            ("node", cert.clone()),
            (
                "pair",
                join_pieces(&[cert.clone(), authority.ca_cert_der().to_vec()]),
            ),
        ],
    );
    write(
        "control_request",
        &[
            ("node_ls", body(&ControlRequest::NodeLs)),
            (
                "create",
                body(&ControlRequest::ServiceCreate {
                    spec: Box::new(spec_template()),
                    networks: Vec::new(),
                }),
            ),
            (
                "update",
                body(&ControlRequest::ServiceUpdate {
                    service: "web".into(),
                    change: Box::new(ServiceChange {
                        replicas: Some(3),
                        ..Default::default()
                    }),
                }),
            ),
            (
                "send",
                body(&ControlRequest::Send {
                    actor: "node".into(),
                    msg: "Stats".into(),
                    args: r#"{"a":[1,2.5,"x",null,true]}"#.into(),
                }),
            ),
        ],
    );
    let spec_bytes =
        bincode::serde::encode_to_vec(spec_template(), bincode::config::standard()).expect("spec");
    let strings: Vec<Vec<u8>> = [
        "web",
        "nginx:1.27",
        "--port=80",
        "A=1",
        "env=prod",
        "node.labels.env==prod",
        "spread=node.labels.zone",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    write(
        "service_spec",
        &[
            ("decoded", [vec![0], spec_bytes].concat()),
            ("strings", [vec![1], join_pieces(&strings)].concat()),
        ],
    );
    write(
        "store_codec",
        &[
            ("append", raft_bytes),
            ("snapshot", snapshot),
            ("command", command_bytes),
        ],
    );
    println!("seeds written under fuzz/seeds/");
}

/// Member `i` as the transport would prove it sent a datagram.
fn sender(i: u8) -> Sender {
    let d = description(i);
    Sender {
        id: d.id,
        role: d.role,
    }
}
