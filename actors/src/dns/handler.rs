//! The request handler hickory-server calls for each query: the cluster's names from the
//! latest table ([`super::names`]), for the networks of the task that asks, found by its
//! source address among this node's endpoints; every other name through hickory's resolver to
//! the host's resolvers.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use hickory_resolver::net::runtime::{Time, TokioRuntimeProvider};
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::Semaphore;
use tracing::debug;

use super::names::{self, Answer};
use crate::model::{NetworkId, NodeId};
use crate::runtime::Endpoints;
use crate::wire::MeshTable;

/// The resolver every forwarded name goes through.
pub(crate) type Forwarder = hickory_resolver::Resolver<TokioRuntimeProvider>;

#[derive(Default)]
pub(crate) struct Counters {
    pub answered: AtomicU64,
    pub forwarded: AtomicU64,
    pub refused: AtomicU64,
}

/// What every listener of the node's server shares.
pub(crate) struct Shared {
    pub me: NodeId,
    pub ttl_secs: u32,
    pub endpoints: Endpoints,
    pub table: RwLock<Option<Arc<MeshTable>>>,
    pub forwarder: Forwarder,
    /// Forwarded queries waiting for the host's resolvers; one more is answered SERVFAIL.
    pub forwards: Semaphore,
    pub rng: Mutex<StdRng>,
    pub counters: Counters,
}

impl Shared {
    pub fn new(
        me: NodeId,
        ttl_secs: u32,
        endpoints: Endpoints,
        forwarder: Forwarder,
        forwards_max: usize,
        seed: u64,
    ) -> Shared {
        Shared {
            me,
            ttl_secs,
            endpoints,
            table: RwLock::new(None),
            forwarder,
            forwards: Semaphore::new(forwards_max),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            counters: Counters::default(),
        }
    }

    fn table(&self) -> Option<Arc<MeshTable>> {
        self.table.read().expect("dns table lock").clone()
    }

    /// The overlay networks of the task of this node at `src`: the one whose ingress or
    /// overlay address it is. Then, for a task the runtime has not recorded (yet), a backend
    /// of this node in the table with that overlay address. None: not one of our tasks.
    pub fn asker_networks(&self, table: &MeshTable, src: IpAddr) -> BTreeSet<NetworkId> {
        let IpAddr::V4(src) = src else {
            return BTreeSet::new();
        };
        for (_, ep) in self.endpoints.all() {
            if ep.host_network {
                continue;
            }
            if ep.ip == IpAddr::V4(src) || ep.overlay.values().any(|a| *a == src) {
                return ep.overlay.keys().copied().collect();
            }
        }
        for s in &table.services {
            for b in s.backends.iter().filter(|b| b.node == self.me) {
                if b.overlay.iter().any(|(_, a)| *a == src) {
                    return b
                        .overlay
                        .iter()
                        .filter_map(|(n, _)| table.networks.get(usize::from(*n)).map(|n| n.id))
                        .collect();
                }
            }
        }
        BTreeSet::new()
    }
}

/// hickory-server's handler: cheap to clone, one per listener.
#[derive(Clone)]
pub(crate) struct Handler(pub Arc<Shared>);

/// What a query gets: records and a response code.
struct Reply {
    code: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    /// Whether this server is the authority (the cluster's names) or relays another's.
    authoritative: bool,
}

impl Reply {
    fn code(code: ResponseCode) -> Reply {
        Reply {
            code,
            answers: Vec::new(),
            authorities: Vec::new(),
            authoritative: false,
        }
    }
}

impl Handler {
    async fn reply(&self, request: &Request) -> Reply {
        let s = &self.0;
        if request.metadata.op_code != OpCode::Query {
            return Reply::code(ResponseCode::NotImp);
        }
        let Ok(info) = request.request_info() else {
            return Reply::code(ResponseCode::FormErr);
        };
        let query = info.query.original().clone();
        let name = query.name.to_ascii();
        if let Some(table) = s.table() {
            let networks = s.asker_networks(&table, request.src().ip());
            let answer = {
                let mut rng = s.rng.lock().expect("dns rng lock");
                names::answer(&table, &networks, &name, &mut *rng)
            };
            if let Answer::Ours(addrs) = answer {
                s.counters.answered.fetch_add(1, Ordering::Relaxed);
                let wants_a = matches!(query.query_type, RecordType::A | RecordType::ANY)
                    && query.query_class == DNSClass::IN;
                let answers = if wants_a {
                    addrs
                        .iter()
                        .map(|a| a_record(&query.name, *a, s.ttl_secs))
                        .collect()
                } else {
                    // Ours, with no record of that type (AAAA, MX…): NOERROR, no answer,
                    // so the client does not go on to ask the host's resolvers.
                    Vec::new()
                };
                return Reply {
                    code: ResponseCode::NoError,
                    answers,
                    authorities: Vec::new(),
                    authoritative: true,
                };
            }
        }
        let Ok(_permit) = s.forwards.try_acquire() else {
            s.counters.refused.fetch_add(1, Ordering::Relaxed);
            debug!(%name, "forward refused: too many queries wait for the host's resolvers");
            return Reply::code(ResponseCode::ServFail);
        };
        s.counters.forwarded.fetch_add(1, Ordering::Relaxed);
        // Asked as given, fully qualified: the asker's resolver already applied its search
        // list, so the host's own search domains must not be added again.
        let mut fqdn: Name = query.name.clone();
        fqdn.set_fqdn(true);
        match s.forwarder.lookup(fqdn, query.query_type).await {
            Ok(lookup) => Reply {
                code: ResponseCode::NoError,
                answers: lookup.answers().to_vec(),
                authorities: lookup.authorities().to_vec(),
                authoritative: false,
            },
            Err(NetError::Dns(DnsError::NoRecordsFound(none))) => Reply {
                code: none.response_code,
                answers: Vec::new(),
                authorities: none.authorities.map(|a| a.to_vec()).unwrap_or_default(),
                authoritative: false,
            },
            Err(NetError::Dns(DnsError::ResponseCode(code))) => Reply::code(code),
            Err(e) => {
                debug!(%name, "forward failed: {e}");
                Reply::code(ResponseCode::ServFail)
            }
        }
    }
}

fn a_record(name: &Name, addr: Ipv4Addr, ttl: u32) -> Record {
    Record::from_rdata(name.clone(), ttl, RData::A(A(addr)))
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let reply = self.reply(request).await;
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = reply.code;
        metadata.authoritative = reply.authoritative;
        metadata.recursion_available = true;
        let mut builder = MessageResponseBuilder::from_message_request(request);
        // The asker's EDNS payload size sets how much a UDP answer may carry.
        let edns = request.edns.as_ref().map(|asked| {
            let mut e = Edns::new();
            e.set_max_payload(asked.max_payload().max(512));
            e
        });
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let response = builder.build(
            metadata,
            reply.answers.iter(),
            reply.authorities.iter(),
            std::iter::empty(),
            std::iter::empty(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                debug!("DNS answer not sent: {e}");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                Header {
                    metadata,
                    counts: HeaderCounts::default(),
                }
                .into()
            }
        }
    }
}
