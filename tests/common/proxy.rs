//! A TCP proxy on loopback whose connections a test can kill (reset) at once, as a cable cut or
//! a crashed middlebox would.

use std::net::SocketAddr;

use glueberry::Multiaddr;
use libp2p::multiaddr::Protocol;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards every connection it accepts to one target.
pub struct Proxy {
    /// Where to dial the target through the proxy.
    pub addr: Multiaddr,
    kill: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy to `target`, a `/ip4/…/tcp/…` address.
    pub async fn to(target: &Multiaddr) -> Self {
        let mut ip = None;
        let mut port = None;
        for p in target.iter() {
            match p {
                Protocol::Ip4(a) => ip = Some(a),
                Protocol::Tcp(p) => port = Some(p),
                _ => {}
            }
        }
        let target = SocketAddr::from((ip.expect("an ip4 address"), port.expect("a tcp port")));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        let addr = format!("/ip4/127.0.0.1/tcp/{}", local.port())
            .parse()
            .unwrap();
        let (kill, killed) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut killed = killed.clone();
                killed.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = killed.changed() => {
                            // Closing with a zero linger sends RST both ways.
                            let _ = inbound.set_zero_linger();
                            let _ = outbound.set_zero_linger();
                        }
                    }
                });
            }
        });
        Self { addr, kill, task }
    }

    /// Resets every connection open through the proxy now; later ones go through.
    pub fn kill_all(&self) {
        self.kill.send_modify(|n| *n += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
