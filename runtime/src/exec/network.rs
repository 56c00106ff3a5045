//! The network a wasm guest gets: nothing by default; published ports it
//! may listen on; outgoing destinations it may reach (spec/network.md).
//!
//! Enforced at the WASI layer: `wasi:sockets` binds and connects go through
//! [`NetworkPolicy::allows_bind`] and [`NetworkPolicy::allows_connect`],
//! outgoing `wasi:http` requests through [`NetworkPolicy::allows_http`].

use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// A bad `-p` or `--allow-net` value.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {value:?}: {reason}")]
pub struct NetworkError {
    /// The flag (`-p`, `--allow-net`, `--network`).
    pub flag: &'static str,
    /// The value as given.
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

/// One `--allow-net` destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetRule {
    /// An address or CIDR block, e.g. `10.0.0.0/8` or `127.0.0.1`.
    Cidr {
        /// The network address.
        addr: IpAddr,
        /// Prefix length.
        prefix: u8,
        /// Only this port (any when `None`).
        port: Option<u16>,
    },
    /// A host name, e.g. `example.com`.
    Host {
        /// Lower-case name.
        name: String,
        /// Only this port.
        port: Option<u16>,
    },
    /// Every name below a domain, e.g. `*.example.com`.
    Suffix {
        /// Lower-case domain, without the `*.`.
        domain: String,
        /// Only this port.
        port: Option<u16>,
    },
}

impl FromStr for NetRule {
    type Err = NetworkError;
    fn from_str(s: &str) -> Result<NetRule, NetworkError> {
        let bad = |reason: &str| NetworkError {
            flag: "--allow-net",
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        // [v6]:port, v6, v4:port, v4/len:port, name:port
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("expected :PORT after ']'")),
            };
            (h, port)
        } else if s.matches(':').count() > 1 {
            (s, None) // a bare IPv6 address or block
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| bad("the port must be 0-65535"))
            })
            .transpose()?;
        if host.is_empty() {
            return Err(bad("a host, address or CIDR block is needed"));
        }
        if let Some((a, len)) = host.split_once('/') {
            let addr: IpAddr = a.parse().map_err(|_| bad("not an IP address before '/'"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix: u8 = len
                .parse()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| bad("bad prefix length"))?;
            return Ok(NetRule::Cidr { addr, prefix, port });
        }
        if let Ok(addr) = host.parse::<IpAddr>() {
            let prefix = if addr.is_ipv4() { 32 } else { 128 };
            return Ok(NetRule::Cidr { addr, prefix, port });
        }
        let name = host.to_ascii_lowercase();
        let valid = |n: &str| {
            !n.is_empty()
                && n.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        if let Some(domain) = name.strip_prefix("*.") {
            if !valid(domain) {
                return Err(bad("not a domain after '*.'"));
            }
            return Ok(NetRule::Suffix {
                domain: domain.to_owned(),
                port,
            });
        }
        if !valid(&name) {
            return Err(bad("not a host name, address or CIDR block"));
        }
        Ok(NetRule::Host { name, port })
    }
}

fn in_block(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|v4| in_block(IpAddr::V4(v4), net, prefix)),
        _ => false,
    }
}

fn port_ok(rule: Option<u16>, port: u16) -> bool {
    rule.is_none_or(|r| r == port)
}

/// A `-p [IP:]HOST_PORT:GUEST_PORT[/tcp|/udp]` mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMap {
    /// Host address to listen on (all when `None`).
    pub host_ip: Option<IpAddr>,
    /// Host port.
    pub host_port: u16,
    /// Port the guest listens on.
    pub guest_port: u16,
    /// UDP instead of TCP.
    pub udp: bool,
}

impl PortMap {
    /// True when wharf relays the host side to the guest's port (the two
    /// ports differ).
    pub fn relayed(&self) -> bool {
        self.host_port != self.guest_port
    }
}

impl FromStr for PortMap {
    type Err = NetworkError;
    fn from_str(s: &str) -> Result<PortMap, NetworkError> {
        let bad = |reason: &str| NetworkError {
            flag: "-p",
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (spec, proto) = match s.rsplit_once('/') {
            Some((a, p)) => (a, p),
            None => (s, "tcp"),
        };
        let udp = match proto {
            "tcp" => false,
            "udp" => true,
            _ => return Err(bad("the protocol must be tcp or udp")),
        };
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("ports must be 1-65535"))
        };
        let (host_ip, host_port, guest_port) = match spec.rsplitn(3, ':').collect::<Vec<_>>()[..] {
            [g] => (None, port(g)?, port(g)?),
            [g, h] => (None, port(h)?, port(g)?),
            [g, h, ip] => {
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                let ip: IpAddr = ip.parse().map_err(|_| bad("not an IP address"))?;
                (Some(ip), port(h)?, port(g)?)
            }
            _ => return Err(bad("expected [IP:]HOST_PORT:GUEST_PORT")),
        };
        Ok(PortMap {
            host_ip,
            host_port,
            guest_port,
            udp,
        })
    }
}

/// What a guest may do on the network. The default is nothing.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    /// `--network host`: everything, as a native process.
    pub host: bool,
    /// Published ports the guest may listen on.
    pub publish: Vec<PortMap>,
    /// Outgoing destinations.
    pub allow: Vec<NetRule>,
    /// Addresses the allowed host names resolved to when the run started.
    resolved: Vec<(IpAddr, Option<u16>)>,
    /// Destinations already reported as refused (each is logged once).
    refused: Arc<Mutex<BTreeSet<String>>>,
    /// UDP peers that sent the guest a datagram, most recent last: the
    /// guest may reply to them.
    udp_peers: Arc<Mutex<VecDeque<SocketAddr>>>,
}

/// UDP peers remembered for replies.
const MAX_UDP_PEERS: usize = 1024;

impl NetworkPolicy {
    /// A policy from `--network` (`none`, the default, or `host`), `-p`
    /// and `--allow-net` values. Allowed host names are resolved now, so a
    /// `wasi:sockets` connect to their addresses is allowed.
    pub fn new(
        network: Option<&str>,
        publish: &[String],
        allow: &[String],
    ) -> Result<NetworkPolicy, NetworkError> {
        let host = match network.unwrap_or("none") {
            "none" | "default" | "bridge" => false,
            "host" => true,
            other => {
                return Err(NetworkError {
                    flag: "--network",
                    value: other.to_owned(),
                    reason: "wasm guests take none (the default) or host".into(),
                })
            }
        };
        let publish = publish
            .iter()
            .map(|p| p.parse())
            .collect::<Result<Vec<PortMap>, _>>()?;
        let allow = allow
            .iter()
            .map(|a| a.parse())
            .collect::<Result<Vec<NetRule>, _>>()?;
        let mut resolved = Vec::new();
        for r in &allow {
            if let NetRule::Host { name, port } = r {
                if let Ok(addrs) = (name.as_str(), 0).to_socket_addrs() {
                    resolved.extend(addrs.map(|a| (a.ip(), *port)));
                }
            }
        }
        Ok(NetworkPolicy {
            host,
            publish,
            allow,
            resolved,
            refused: Default::default(),
            udp_peers: Default::default(),
        })
    }

    /// True when the guest may use the network at all.
    pub fn any(&self) -> bool {
        self.host || !self.publish.is_empty() || !self.allow.is_empty()
    }

    /// True when name lookups are useful: a name rule exists, or `host`.
    pub fn allows_lookup(&self) -> bool {
        self.host
            || self
                .allow
                .iter()
                .any(|r| !matches!(r, NetRule::Cidr { .. }))
    }

    /// May the guest bind (and listen on) `addr`? Only published guest
    /// ports (port 0, an implicit bind before connect, is allowed when
    /// outgoing connections are).
    pub fn allows_bind(&self, addr: SocketAddr, udp: bool) -> bool {
        if self.host {
            return true;
        }
        if let Some(p) = self
            .publish
            .iter()
            .find(|p| p.guest_port == addr.port() && p.udp == udp)
        {
            // A relayed port is reached through loopback only; a port
            // published on one host address is bound on that address only.
            let where_ok = if p.relayed() {
                addr.ip().is_loopback()
            } else {
                p.host_ip.is_none_or(|ip| ip == addr.ip())
            };
            if !where_ok {
                let want = if p.relayed() {
                    "127.0.0.1 (the port is published through wharf's relay)".to_owned()
                } else {
                    p.host_ip.map(|ip| ip.to_string()).unwrap_or_default()
                };
                self.log_once(
                    format!("bind-addr {addr}"),
                    format!("refused to listen on {addr}: bind {want} instead"),
                );
            }
            return where_ok;
        }
        if addr.port() == 0 {
            // An implicit bind before a connect or send.
            if self.allow.is_empty() {
                self.log_once(
                    "outgoing".into(),
                    "refused an outgoing connection: wasm guests have no network without --allow-net or --network host".into(),
                );
                return false;
            }
            return true;
        }
        let proto = if udp { "udp" } else { "tcp" };
        self.log_once(
            format!("bind {addr} {proto}"),
            format!(
                "refused to listen on {addr}/{proto}: the port is not published (-p {}:{})",
                addr.port(),
                addr.port()
            ),
        );
        false
    }

    /// May the guest connect (or send datagrams) to `addr`?
    pub fn allows_connect(&self, addr: SocketAddr) -> bool {
        let ok = self.host
            || self.allow.iter().any(|r| match r {
                NetRule::Cidr {
                    addr: n,
                    prefix,
                    port,
                } => in_block(addr.ip(), *n, *prefix) && port_ok(*port, addr.port()),
                _ => false,
            })
            || self
                .resolved
                .iter()
                .any(|(ip, port)| *ip == addr.ip() && port_ok(*port, addr.port()));
        if !ok {
            self.refuse(&addr.to_string());
        }
        ok
    }

    /// Remembers that `peer` sent the guest a datagram on a socket it was
    /// allowed to bind, so that the guest may answer it.
    fn note_udp_peer(&self, peer: SocketAddr) {
        let mut peers = self.udp_peers.lock().expect("UDP peer lock");
        if let Some(i) = peers.iter().position(|p| *p == peer) {
            peers.remove(i);
        } else if peers.len() >= MAX_UDP_PEERS {
            peers.pop_front();
        }
        peers.push_back(peer);
    }

    /// May the guest send a datagram to `addr`: a reply to a peer that
    /// sent it one, or an allowed destination.
    pub fn allows_udp_send(&self, addr: SocketAddr) -> bool {
        let reply = self
            .udp_peers
            .lock()
            .expect("UDP peer lock")
            .contains(&addr);
        reply || self.allows_connect(addr)
    }

    /// May an outgoing `wasi:http` request go to `host:port`?
    pub fn allows_http(&self, host: &str, port: u16) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let ok = self.host
            || self.allow.iter().any(|r| match r {
                NetRule::Cidr {
                    addr,
                    prefix,
                    port: p,
                } => {
                    host.parse::<IpAddr>()
                        .is_ok_and(|ip| in_block(ip, *addr, *prefix))
                        && port_ok(*p, port)
                }
                NetRule::Host { name, port: p } => *name == host && port_ok(*p, port),
                NetRule::Suffix { domain, port: p } => {
                    host.ends_with(&format!(".{domain}")) && port_ok(*p, port)
                }
            });
        if !ok {
            self.refuse(&format!("{host}:{port}"));
        }
        ok
    }

    fn refuse(&self, what: &str) {
        self.log_once(
            what.to_owned(),
            format!("refused a connection to {what}: not allowed by --allow-net"),
        );
    }

    /// Logs `message` the first time `key` is refused.
    fn log_once(&self, key: String, message: String) {
        let mut seen = self.refused.lock().expect("refusal log lock");
        // Bounded: a guest scanning addresses must not grow this forever.
        if seen.len() < 1024 && seen.insert(key) {
            tracing::warn!("{message}");
        }
    }

    /// Applies the policy to a WASI context: TCP/UDP, name lookups, and the
    /// per-address check.
    pub fn apply(&self, b: &mut wasmtime_wasi::WasiCtxBuilder) {
        use wasmtime_wasi::sockets::SocketAddrUse;
        // TCP and UDP stay on so that every refusal goes through the check
        // below (and is logged); the check denies everything by default.
        b.allow_tcp(true);
        b.allow_udp(true);
        b.allow_ip_name_lookup(self.allows_lookup());
        let policy = self.clone();
        b.socket_addr_check(move |addr, usage| {
            let ok = match usage {
                SocketAddrUse::TcpBind | SocketAddrUse::TcpListen => {
                    policy.allows_bind(addr, false)
                }
                // Accepting or receiving on a socket the guest was allowed
                // to bind; a datagram's sender may be answered.
                SocketAddrUse::TcpAccept => true,
                SocketAddrUse::UdpReceive => {
                    policy.note_udp_peer(addr);
                    true
                }
                SocketAddrUse::UdpBind => policy.allows_bind(addr, true),
                SocketAddrUse::TcpConnect => policy.allows_connect(addr),
                SocketAddrUse::UdpSend => policy.allows_udp_send(addr),
            };
            Box::pin(async move { ok })
        });
    }
}

/// Forwarders for published TCP ports whose host side differs from the
/// guest side (another port, or one host address): wharf listens on the
/// host side and relays each connection to the guest's port on loopback.
/// They stop when the returned value is dropped.
pub(crate) fn forward_ports(publish: &[PortMap]) -> std::io::Result<Vec<Forwarder>> {
    let mut out = Vec::new();
    for p in publish {
        if !p.relayed() {
            continue; // the guest's own socket is the published one
        }
        if p.udp {
            return Err(std::io::Error::other(format!(
                "-p {}:{}/udp: UDP ports can only be published as the same port",
                p.host_port, p.guest_port
            )));
        }
        let ip = p.host_ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let listener = std::net::TcpListener::bind((ip, p.host_port)).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("-p: cannot listen on {ip}:{}: {e}", p.host_port),
            )
        })?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let guest = SocketAddr::from(([127, 0, 0, 1], p.guest_port));
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        // Bounded: each relay costs two threads.
                        if RELAYS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= MAX_RELAYS {
                            RELAYS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                            continue;
                        }
                        std::thread::spawn(move || {
                            relay(client, guest);
                            RELAYS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    Err(_) => break,
                }
            }
        });
        out.push(Forwarder { stop });
    }
    Ok(out)
}

/// Relayed connections open at once, across all forwarders.
static RELAYS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// At most this many relayed connections at once; more are closed.
const MAX_RELAYS: usize = 256;

fn relay(client: std::net::TcpStream, guest: SocketAddr) {
    let _ = client.set_nonblocking(false);
    let Ok(upstream) = std::net::TcpStream::connect(guest) else {
        return;
    };
    let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let (mut c1, mut u1) = (client, upstream);
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut u1, &mut c1);
    let _ = c1.shutdown(std::net::Shutdown::Write);
    let _ = t.join();
}

/// A running port forwarder; stops accepting when dropped.
pub(crate) struct Forwarder {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules() {
        assert_eq!(
            "10.0.0.0/8".parse::<NetRule>().unwrap(),
            NetRule::Cidr {
                addr: "10.0.0.0".parse().unwrap(),
                prefix: 8,
                port: None
            }
        );
        assert_eq!(
            "[::1]:443".parse::<NetRule>().unwrap(),
            NetRule::Cidr {
                addr: "::1".parse().unwrap(),
                prefix: 128,
                port: Some(443)
            }
        );
        assert_eq!(
            "*.Example.com:80".parse::<NetRule>().unwrap(),
            NetRule::Suffix {
                domain: "example.com".into(),
                port: Some(80)
            }
        );
        assert!("10.0.0.0/33".parse::<NetRule>().is_err());
        assert!("exa mple".parse::<NetRule>().is_err());
        assert!("host:99999".parse::<NetRule>().is_err());
    }

    #[test]
    fn parses_port_maps() {
        let p: PortMap = "127.0.0.1:8080:80/udp".parse().unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.guest_port, p.udp),
            (Some("127.0.0.1".parse().unwrap()), 8080, 80, true)
        );
        let p: PortMap = "9000".parse().unwrap();
        assert_eq!((p.host_port, p.guest_port), (9000, 9000));
        assert!("0:80".parse::<PortMap>().is_err());
        assert!("80/sctp".parse::<PortMap>().is_err());
    }

    #[test]
    fn deny_by_default_and_allow_exactly() {
        let none = NetworkPolicy::new(None, &[], &[]).unwrap();
        assert!(!none.any());
        assert!(!none.allows_connect("127.0.0.1:80".parse().unwrap()));
        assert!(!none.allows_bind("0.0.0.0:80".parse().unwrap(), false));
        let p = NetworkPolicy::new(
            None,
            &["8080:80".into()],
            &["127.0.0.0/8:5000".into(), "*.example.com".into()],
        )
        .unwrap();
        // 8080:80 is relayed: the guest binds loopback only.
        assert!(p.allows_bind("127.0.0.1:80".parse().unwrap(), false));
        assert!(!p.allows_bind("0.0.0.0:80".parse().unwrap(), false));
        assert!(!p.allows_bind("127.0.0.1:81".parse().unwrap(), false));
        let same = NetworkPolicy::new(None, &["80".into(), "10.1.2.3:90:90".into()], &[]).unwrap();
        assert!(same.allows_bind("0.0.0.0:80".parse().unwrap(), false));
        assert!(same.allows_bind("10.1.2.3:90".parse().unwrap(), false));
        assert!(!same.allows_bind("0.0.0.0:90".parse().unwrap(), false));
        assert!(!p.allows_bind("127.0.0.1:80".parse().unwrap(), true));
        assert!(p.allows_connect("127.0.0.9:5000".parse().unwrap()));
        assert!(!p.allows_connect("127.0.0.9:5001".parse().unwrap()));
        assert!(!p.allows_connect("10.0.0.1:5000".parse().unwrap()));
        assert!(p.allows_http("api.example.com", 443));
        assert!(!p.allows_http("example.com.evil", 443));
        assert!(!p.allows_http("notexample.com", 443));
        let host = NetworkPolicy::new(Some("host"), &[], &[]).unwrap();
        assert!(host.allows_connect("8.8.8.8:53".parse().unwrap()));
        assert!(NetworkPolicy::new(Some("bridgeX"), &[], &[]).is_err());
    }
}
