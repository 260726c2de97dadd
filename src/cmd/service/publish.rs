//! `--publish` (create), `--publish-add` and `--publish-rm` (update): Docker's two syntaxes
//! for a published port. The node checks the ports again ([`validate_ports`]) and picks a
//! published port where the user named none.
//!
//! [`validate_ports`]: crate::control::validate::validate_ports

use swarm_actors::model::{PortConfig, PortProtocol, PublishMode};

use crate::control::proto::PortRm;

/// A port number, 1–65535, or the error naming what it is.
fn number(what: &str, text: &str, value: &str) -> Result<u16, String> {
    match value.trim().parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "invalid {what} port {value:?} in --publish {text:?}: a port is 1-65535"
        )),
    }
}

fn protocol(text: &str, value: &str) -> Result<PortProtocol, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "tcp" => Ok(PortProtocol::Tcp),
        "udp" => Ok(PortProtocol::Udp),
        other => Err(format!(
            "invalid protocol {other:?} in --publish {text:?}: tcp or udp"
        )),
    }
}

/// The value of `key` among `options`, or the error listing them.
fn pick<T: Copy>(key: &str, text: &str, value: &str, options: &[(&str, T)]) -> Result<T, String> {
    let value = value.trim();
    options
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            format!(
                "invalid {key} {value:?} in --publish {text:?}: {}",
                names.join(" or ")
            )
        })
}

/// `8080:80`, `8080:80/udp`, `80` (the node picks the published port), or the long syntax
/// `published=8080,target=80,protocol=udp,mode=host,proxy-protocol=v2,affinity=client-ip`.
pub fn parse_publish(text: &str) -> Result<PortConfig, String> {
    let mut port = PortConfig::tcp(0, 0);
    if text.contains('=') {
        let mut target = false;
        for field in text.split(',') {
            let (key, value) = field.split_once('=').ok_or_else(|| {
                format!("invalid field {field:?} in --publish {text:?}: expected key=value")
            })?;
            match key.trim().to_ascii_lowercase().as_str() {
                "published" => port.published = number("published", text, value)?,
                "target" => {
                    port.target = number("target", text, value)?;
                    target = true;
                }
                "protocol" => port.protocol = protocol(text, value)?,
                "mode" => {
                    let modes = [
                        ("ingress", PublishMode::Ingress),
                        ("host", PublishMode::Host),
                    ];
                    port.mode = pick("mode", text, value, &modes)?;
                }
                "proxy-protocol" => {
                    port.proxy_protocol = pick(
                        "proxy-protocol",
                        text,
                        value,
                        &[("v2", true), ("none", false)],
                    )?;
                }
                "affinity" => {
                    let options = [("client-ip", true), ("none", false)];
                    port.affinity = pick("affinity", text, value, &options)?;
                }
                other => {
                    return Err(format!(
                        "invalid field {other:?} in --publish {text:?}: published, target, protocol, mode, proxy-protocol or affinity"
                    ));
                }
            }
        }
        if !target {
            // Docker's words.
            return Err(format!(
                "missing mandatory field \"target\" in --publish {text:?}"
            ));
        }
        return Ok(port);
    }
    let (ports, proto) = match text.split_once('/') {
        Some((ports, proto)) => (ports, protocol(text, proto)?),
        None => (text, PortProtocol::Tcp),
    };
    port.protocol = proto;
    match ports.split_once(':') {
        Some((published, target)) => {
            port.published = number("published", text, published)?;
            port.target = number("target", text, target)?;
        }
        None => port.target = number("target", text, ports)?,
    }
    Ok(port)
}

/// `--publish-rm`: `N[/proto]` or `P:T[/proto]`.
pub fn parse_publish_rm(text: &str) -> Result<PortRm, String> {
    let (ports, proto) = match text.split_once('/') {
        Some((ports, proto)) => (ports, Some(protocol(text, proto)?)),
        None => (text, None),
    };
    let (published, port) = match ports.split_once(':') {
        Some((p, t)) => (
            Some(number("published", text, p)?),
            number("target", text, t)?,
        ),
        None => (None, number("published", text, ports)?),
    };
    Ok(PortRm {
        published,
        port,
        protocol: proto,
    })
}

/// Every value of a repeatable flag parsed; the first bad one names itself.
pub fn parse_all<T>(
    texts: &[String],
    parse: fn(&str) -> Result<T, String>,
) -> anyhow::Result<Vec<T>> {
    texts
        .iter()
        .map(|t| parse(t).map_err(anyhow::Error::msg))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_syntax() {
        assert_eq!(parse_publish("8080:80").unwrap(), PortConfig::tcp(8080, 80));
        let udp = parse_publish("5353:53/udp").unwrap();
        assert_eq!(
            (udp.published, udp.target, udp.protocol),
            (5353, 53, PortProtocol::Udp)
        );
        assert_eq!(parse_publish("80").unwrap(), PortConfig::tcp(0, 80));
        for bad in [
            "0:80",
            "8080:0",
            "70000:80",
            "x:80",
            "8080:80/sctp",
            "",
            "8080:",
        ] {
            let err = parse_publish(bad).unwrap_err();
            assert!(err.contains("--publish"), "{bad}: {err}");
        }
    }

    #[test]
    fn long_syntax() {
        let p = parse_publish(
            "published=8090,target=80,protocol=tcp,mode=host,proxy-protocol=v2,affinity=client-ip",
        )
        .unwrap();
        assert_eq!(
            p,
            PortConfig {
                protocol: PortProtocol::Tcp,
                target: 80,
                published: 8090,
                mode: PublishMode::Host,
                proxy_protocol: true,
                affinity: true,
            }
        );
        assert_eq!(parse_publish("target=80").unwrap(), PortConfig::tcp(0, 80));
        let err = parse_publish("published=8080").unwrap_err();
        assert!(err.contains("missing mandatory field \"target\""), "{err}");
        for bad in [
            "published=8080,target=80,mode=vip",
            "target=80,proxy-protocol=v1",
            "target=80,affinity=cookie",
            "target=80,colour=red",
            "target=80,published",
            "target=0",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn removals() {
        let rm = parse_publish_rm("8082").unwrap();
        assert_eq!((rm.published, rm.port, rm.protocol), (None, 8082, None));
        let rm = parse_publish_rm("8082:80/udp").unwrap();
        assert_eq!(
            (rm.published, rm.port, rm.protocol),
            (Some(8082), 80, Some(PortProtocol::Udp))
        );
        assert!(parse_publish_rm("0").is_err());
        assert!(parse_publish_rm("80/icmp").is_err());
    }

    #[test]
    fn a_removal_takes_the_published_port_else_the_target() {
        let ports = vec![
            PortConfig::tcp(8082, 80),
            PortConfig {
                protocol: PortProtocol::Udp,
                ..PortConfig::tcp(8082, 80)
            },
            PortConfig::tcp(30000, 8082),
            PortConfig::tcp(30001, 81),
        ];
        let rm = |text: &str| {
            let mut p = ports.clone();
            parse_publish_rm(text)
                .unwrap()
                .apply("web", &mut p)
                .map(|_| p)
        };
        // By published port first, both protocols without one.
        assert_eq!(rm("8082").unwrap(), ports[2..].to_vec());
        assert_eq!(rm("8082/udp").unwrap().len(), 3);
        // By target when nothing is published on the number (Docker's rule).
        assert_eq!(rm("81").unwrap(), ports[..3].to_vec());
        // Exact pair.
        assert_eq!(rm("30000:8082").unwrap().len(), 3);
        assert_eq!(
            rm("9999").unwrap_err(),
            "service web does not publish port 9999"
        );
        assert!(rm("30000:80").is_err());
    }
}
