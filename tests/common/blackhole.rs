//! Relays on loopback that a test can make go silent: afterwards they keep every socket open
//! but never forward a byte again (a blackholed path, a frozen VM, a pulled cable). One for TCP,
//! one for UDP (QUIC).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use glueberry::{
    Config, DisconnectReason, Error, Event, Filter, Multiaddr, Node, State, Subscription,
};
use libp2p::multiaddr::Protocol;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;

/// A relay to one target that forwards until [`Blackhole::freeze`].
pub struct Blackhole {
    /// Where to dial the target through the relay.
    pub addr: Multiaddr,
    freeze: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn socket_addr(target: &Multiaddr) -> (SocketAddr, bool) {
    let (mut ip, mut port, mut udp) = (None, None, false);
    for p in target.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(a),
            Protocol::Tcp(p) => port = Some(p),
            Protocol::Udp(p) => {
                port = Some(p);
                udp = true;
            }
            _ => {}
        }
    }
    (
        SocketAddr::from((ip.expect("an ip4 address"), port.expect("a port"))),
        udp,
    )
}

impl Blackhole {
    /// A relay to `target`, a `/ip4/…/tcp/…` or `/ip4/…/udp/…/quic-v1` address.
    pub async fn to(target: &Multiaddr) -> Self {
        let (target, udp) = socket_addr(target);
        let (freeze, frozen) = watch::channel(false);
        if udp {
            Self::udp(target, freeze, frozen).await
        } else {
            Self::tcp(target, freeze, frozen).await
        }
    }

    async fn tcp(
        target: SocketAddr,
        freeze: watch::Sender<bool>,
        frozen: watch::Receiver<bool>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!(
            "/ip4/127.0.0.1/tcp/{}",
            listener.local_addr().unwrap().port()
        )
        .parse()
        .unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut frozen = frozen.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = async { let _ = frozen.wait_for(|f| *f).await; } => {
                            // Silent from now on, sockets open: hold them until the test ends.
                            std::future::pending::<()>().await;
                        }
                    }
                    drop((inbound, outbound));
                });
            }
        });
        Self { addr, freeze, task }
    }

    async fn udp(
        target: SocketAddr,
        freeze: watch::Sender<bool>,
        frozen: watch::Receiver<bool>,
    ) -> Self {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = format!(
            "/ip4/127.0.0.1/udp/{}/quic-v1",
            front.local_addr().unwrap().port()
        )
        .parse()
        .unwrap();
        let task = tokio::spawn(async move {
            // One upstream socket per client address, so that the target sees each client apart.
            let mut upstream: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut buf = vec![0u8; 65_536];
            let mut children = Vec::new();
            loop {
                let Ok((n, from)) = front.recv_from(&mut buf).await else {
                    return;
                };
                if *frozen.borrow() {
                    continue;
                }
                let up = match upstream.get(&from) {
                    Some(up) => up.clone(),
                    None => {
                        let up = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                        up.connect(target).await.unwrap();
                        upstream.insert(from, up.clone());
                        let (up2, front2, frozen2) = (up.clone(), front.clone(), frozen.clone());
                        children.push(tokio::spawn(async move {
                            let mut buf = vec![0u8; 65_536];
                            while let Ok(n) = up2.recv(&mut buf).await {
                                if !*frozen2.borrow() {
                                    let _ = front2.send_to(&buf[..n], from).await;
                                }
                            }
                        }));
                        up
                    }
                };
                let _ = up.send(&buf[..n]).await;
            }
        });
        Self { addr, freeze, task }
    }

    /// Stops forwarding, both ways, for every connection now and later; sockets stay open.
    pub fn freeze(&self) {
        self.freeze.send_replace(true);
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What [`lose_path`] saw.
pub struct LostPath {
    /// The node that dialled (through the relay).
    pub a: Node,
    /// The node it dialled.
    pub b: Node,
    /// a's events about b, from the start (read up to its `Disconnected`).
    pub a_events: Subscription,
    /// Time from the freeze to each side's `Disconnected`.
    pub a_took: std::time::Duration,
    /// See `a_took`.
    pub b_took: std::time::Duration,
    /// The reasons each side gave.
    pub a_reason: DisconnectReason,
    /// See `a_reason`.
    pub b_reason: DisconnectReason,
    /// A sender on a that sent 64 KiB messages to b from the freeze on: how many went through,
    /// and the error it got.
    pub sender: (u64, Error),
}

/// Two nodes from `a` and `b` handshake through a [`Blackhole`] relay and exchange a message;
/// then the relay freezes while a sender on `a` keeps sending to `b`. Returns once both sides
/// reported the other Disconnected and the sender stopped.
pub async fn lose_path(a: Config, b: Config) -> LostPath {
    let a = crate::started(a).await;
    let b = crate::started(b).await;
    let relay = Blackhole::to(&b.listen_addrs()[0]).await;
    let mut a_events = a.subscribe_filtered(Filter::all().peers([b.peer_id()]));
    let mut b_events = b.subscribe_filtered(Filter::all().peers([a.peer_id()]));
    a.add_peer(b.peer_id(), vec![relay.addr.clone()], Default::default())
        .await
        .unwrap();
    a.connect(b.peer_id()).await.unwrap();
    tokio::join!(
        crate::handshake(&a, b.peer_id(), true, &["data"]),
        crate::handshake(&b, a.peer_id(), false, &["data"])
    );
    // The stream is open and carries data before the path goes silent.
    a.send(b.peer_id(), "data", vec![1]).await.unwrap();
    crate::within(b.messages().recv()).await.unwrap();
    relay.freeze();
    let t0 = std::time::Instant::now();
    let sender = {
        let a = a.clone();
        let peer = b.peer_id();
        tokio::spawn(async move {
            let mut sent = 0u64;
            loop {
                match a.send(peer, "data", vec![7u8; 64 * 1024]).await {
                    Ok(()) => sent += 1,
                    Err(e) => return (sent, e),
                }
            }
        })
    };
    // Generous: the defaults take up to 35 s.
    let bound = std::time::Duration::from_secs(120);
    let ((a_took, a_reason), (b_took, b_reason)) = tokio::time::timeout(bound, async {
        tokio::join!(
            disconnected(&mut a_events, t0),
            disconnected(&mut b_events, t0)
        )
    })
    .await
    .expect("both sides see the loss");
    let sender = tokio::time::timeout(bound, sender)
        .await
        .expect("the sender stops")
        .unwrap();
    drop(relay);
    LostPath {
        a,
        b,
        a_events,
        a_took,
        b_took,
        a_reason,
        b_reason,
        sender,
    }
}

/// The time from `t0` to the first `Disconnected` on `sub`, and its reason.
async fn disconnected(
    sub: &mut Subscription,
    t0: std::time::Instant,
) -> (std::time::Duration, DisconnectReason) {
    loop {
        if let Ok(Event::Connection(e)) = sub.recv().await
            && e.state == State::Disconnected
        {
            return (t0.elapsed(), e.reason.expect("a reason"));
        }
    }
}
