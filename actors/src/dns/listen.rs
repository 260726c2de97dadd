//! One listening address of the DNS server: a UDP socket and a TCP listener on one port,
//! served by one hickory-server, closed when dropped.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::Server;
use socket2::{Domain, Protocol, Socket, Type};

use super::DnsConfig;
use super::handler::Handler;

/// Answers queued per TCP connection before the server waits for the client to read.
const TCP_RESPONSE_BUFFER: usize = 16;

/// Connections a TCP listener queues before they are accepted.
const TCP_BACKLOG: i32 = 128;

pub(super) struct Listener {
    pub addr: SocketAddr,
    server: Server<Handler>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Dropping the server aborts its tasks too; the token tells them first.
        self.server.shutdown_token().cancel();
    }
}

/// A socket bound to `addr` whether or not the address is on an interface yet
/// (`IP_FREEBIND`): the data path may put the gateway on its bridge after the server starts.
fn socket(addr: SocketAddr, ty: Type, protocol: Protocol) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
    if addr.is_ipv4() {
        s.set_freebind_v4(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

impl Listener {
    /// Binds UDP on `addr` and TCP on the same address and port (the one UDP got when
    /// `addr`'s port is 0), and serves both with `handler`.
    pub fn bind(addr: SocketAddr, config: &DnsConfig, handler: Handler) -> std::io::Result<Self> {
        let udp = socket(addr, Type::DGRAM, Protocol::UDP)?;
        let bound = udp
            .local_addr()?
            .as_socket()
            .ok_or_else(|| std::io::Error::other("the UDP socket has no IP address"))?;
        let tcp = socket(bound, Type::STREAM, Protocol::TCP)?;
        tcp.listen(TCP_BACKLOG)?;
        let udp = tokio::net::UdpSocket::from_std(udp.into())?;
        let tcp = tokio::net::TcpListener::from_std(tcp.into())?;
        let mut server = Server::new(handler);
        server.register_socket(udp);
        server.register_listener(
            tcp,
            Duration::from_millis(config.tcp_idle_ms),
            TCP_RESPONSE_BUFFER,
        );
        Ok(Listener {
            addr: bound,
            server,
        })
    }
}
