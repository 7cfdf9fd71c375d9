//! Connection floods, as an attacker would send them, from chosen loopback addresses (the
//! whole of 127.0.0.0/8 reaches this machine, so each address stands for one host).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use libp2p::core::muxing::StreamMuxerExt as _;
use libp2p::core::upgrade::OutboundConnectionUpgrade as _;
use libp2p::{identity, noise, yamux};
use tokio::net::TcpSocket;
use tokio_util::compat::TokioAsyncReadCompatExt as _;

/// How long an attacker task waits before refilling a connection the node closed. It keeps a
/// test's own CPU use bounded; the node never benefits from it beyond that.
const REFILL_PAUSE: Duration = Duration::from_millis(50);

/// A running flood; dropping it stops every connection.
pub struct Flood {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Connections the node accepted at the TCP level (each refill counts).
    pub connects: Arc<AtomicU64>,
}

impl Drop for Flood {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// `n` addresses `127.<net>.0.1` … `127.<net>.0.<n>`.
pub fn hosts(net: u8, n: u8) -> Vec<Ipv4Addr> {
    (1..=n).map(|i| Ipv4Addr::new(127, net, 0, i)).collect()
}

async fn connect_from(ip: Ipv4Addr, target: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((ip, 0)))?;
    socket.connect(target).await
}

impl Flood {
    fn spawn<F, Fut>(ips: &[Ipv4Addr], per_ip: usize, target: SocketAddr, one: F) -> Self
    where
        F: Fn(Ipv4Addr, SocketAddr, Arc<AtomicU64>) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let connects = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for ip in ips {
            for _ in 0..per_ip {
                let (ip, one, connects) = (*ip, one.clone(), connects.clone());
                tasks.push(tokio::spawn(async move {
                    loop {
                        one(ip, target, connects.clone()).await;
                        tokio::time::sleep(REFILL_PAUSE).await;
                    }
                }));
            }
        }
        Self { tasks, connects }
    }

    /// TCP connections that never start the security handshake, held until the node closes
    /// them and then opened again.
    pub fn silent_tcp(target: SocketAddr, ips: &[Ipv4Addr], per_ip: usize) -> Self {
        Self::spawn(ips, per_ip, target, |ip, target, connects| async move {
            let Ok(mut s) = connect_from(ip, target).await else {
                return;
            };
            connects.fetch_add(1, Ordering::Relaxed);
            let mut buf = [0u8; 256];
            // Whatever the node says, never answer; end when it closes.
            while let Ok(n) = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
    }

    /// Noise + yamux connections, each from a fresh identity, that never open a stream; held
    /// until the node closes them and then opened again with another identity.
    pub fn idle_noise(target: SocketAddr, ips: &[Ipv4Addr], per_ip: usize) -> Self {
        Self::spawn(ips, per_ip, target, |ip, target, connects| async move {
            let _ = idle_noise_once(ip, target, &connects).await;
        })
    }
}

async fn idle_noise_once(
    ip: Ipv4Addr,
    target: SocketAddr,
    connects: &AtomicU64,
) -> Result<(), Box<dyn std::error::Error>> {
    let tcp = connect_from(ip, target).await?;
    connects.fetch_add(1, Ordering::Relaxed);
    let (_, io) = noise_then_yamux(tcp).await?;
    let mut muxer = yamux::Config::default()
        .upgrade_outbound(io, "/yamux/1.0.0")
        .await?;
    // Drive the connection, refusing every stream the node opens, until it is closed.
    loop {
        let stream = futures::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(r) = muxer.poll_unpin(cx) {
                return std::task::Poll::Ready(r.map(|_| None));
            }
            muxer.poll_inbound_unpin(cx).map(|r| r.map(Some))
        })
        .await?;
        drop(stream);
    }
}

/// A Noise session over TCP, as a libp2p dialer gets it.
pub(crate) type Secured = noise::Output<
    multistream_select::Negotiated<tokio_util::compat::Compat<tokio::net::TcpStream>>,
>;

/// Noise over `tcp` as a fresh identity, then yamux negotiated (multistream-select 1.0): what
/// is left is the secured stream to run a yamux of one's own on, and the identity.
pub(crate) async fn noise_then_yamux(
    tcp: tokio::net::TcpStream,
) -> Result<(identity::Keypair, multistream_select::Negotiated<Secured>), Box<dyn std::error::Error>>
{
    let key = identity::Keypair::generate_ed25519();
    let v = multistream_select::Version::V1;
    let (_, io) = multistream_select::dialer_select_proto(tcp.compat(), ["/noise"], v).await?;
    let (_, secure) = noise::Config::new(&key)?
        .upgrade_outbound(io, "/noise")
        .await?;
    let (_, io) = multistream_select::dialer_select_proto(secure, ["/yamux/1.0.0"], v).await?;
    Ok((key, io))
}
