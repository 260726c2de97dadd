//! The PROXY protocol v2 header (the `ppp` crate) a task with `proxy-protocol=v2` gets first,
//! naming the client and the address it connected to.

use std::net::SocketAddr;

use ppp::v2::{Builder, Command, Protocol, Version};

use crate::model::PortProtocol;

/// The header for a connection (TCP: `Stream`) or a datagram (UDP: `Datagram`, sent before
/// each one) from `client` to `entry`. Addresses of two families are given as IPv6, the
/// IPv4 one mapped.
pub fn header(protocol: PortProtocol, client: SocketAddr, entry: SocketAddr) -> Vec<u8> {
    let proto = match protocol {
        PortProtocol::Tcp => Protocol::Stream,
        PortProtocol::Udp => Protocol::Datagram,
    };
    let (client, entry) = match (client, entry) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => {
            (client, entry)
        }
        _ => (v6(client), v6(entry)),
    };
    Builder::with_addresses(Version::Two | Command::Proxy, proto, (client, entry))
        .build()
        .expect("a header of two addresses and no TLVs is written to memory")
}

fn v6(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        v6 => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_parses_back_to_the_client_and_entry() {
        let client: SocketAddr = "192.0.2.7:51000".parse().unwrap();
        let entry: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        let bytes = header(PortProtocol::Tcp, client, entry);
        let parsed = ppp::v2::Header::try_from(bytes.as_slice()).unwrap();
        assert_eq!(parsed.command, Command::Proxy);
        assert_eq!(parsed.protocol, Protocol::Stream);
        assert_eq!(parsed.addresses, ppp::v2::Addresses::from((client, entry)));
        let udp = header(PortProtocol::Udp, client, "[::1]:53".parse().unwrap());
        let parsed = ppp::v2::Header::try_from(udp.as_slice()).unwrap();
        assert_eq!(parsed.protocol, Protocol::Datagram);
        assert_eq!(
            parsed.address_family(),
            ppp::v2::AddressFamily::IPv6,
            "mixed families are sent as IPv6"
        );
    }
}
