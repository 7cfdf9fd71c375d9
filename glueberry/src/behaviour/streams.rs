//! Our stream behaviour: named inbound protocols and outbound streams on a chosen connection.
//!
//! It does the job of libp2p-stream without its two sharp edges: inbound streams reach the
//! driver as swarm events (bounded by the swarm's per-connection event buffer, so a busy driver
//! slows the connection down instead of streams being dropped), and an outbound stream is
//! opened on the connection the driver names, never by dialling.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::upgrade::{InboundUpgrade, OutboundUpgrade, UpgradeInfo};
use libp2p::core::{Endpoint, Multiaddr, transport::PortUse};
use libp2p::swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, NotifyHandler, Stream, StreamProtocol, StreamUpgradeError, SubstreamProtocol,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use tokio::sync::oneshot;

/// Why an outbound stream could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpenError {
    /// The remote does not accept the protocol (yet: it may not have prepared the name).
    #[error("the peer does not accept {0}")]
    Unsupported(StreamProtocol),
    /// Negotiation timed out.
    #[error("stream negotiation timed out")]
    Timeout,
    /// The connection failed or closed.
    #[error("{0}")]
    Io(String),
    /// The peer has no connection.
    #[error("not connected")]
    NotConnected,
}

/// The answer to an open request.
pub(crate) type OpenReply = oneshot::Sender<Result<Stream, OpenError>>;

/// A request to a connection's handler.
#[derive(Debug)]
pub(crate) struct OpenRequest {
    protocol: StreamProtocol,
    reply: OpenReply,
}

/// What the behaviour tells a connection's handler.
#[derive(Debug)]
pub(crate) enum ToHandler {
    /// Open an outbound stream.
    Open(OpenRequest),
    /// This connection is a duplicate: stop keeping it alive, so that it closes once its last
    /// stream has closed and the idle timeout has passed.
    Retire,
    /// Keep this connection alive again (it turned out to be the one to keep).
    Keep,
}

/// What the behaviour reports to the driver.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub(crate) peer: PeerId,
    pub(crate) connection: ConnectionId,
    pub(crate) protocol: StreamProtocol,
    pub(crate) stream: Stream,
}

/// The protocols accepted inbound: from every peer (the handshake), and per peer (the names
/// prepared for it). Shared with every connection's handler, which offers its peer's set.
#[derive(Default)]
struct Accepted {
    all: Vec<StreamProtocol>,
    per_peer: HashMap<PeerId, Vec<StreamProtocol>>,
}

type Protocols = Arc<RwLock<Accepted>>;

/// The stream behaviour.
pub(crate) struct Behaviour {
    protocols: Protocols,
    pending: VecDeque<ToSwarm<Inbound, ToHandler>>,
}

impl Behaviour {
    pub(crate) fn new() -> Self {
        Self {
            protocols: Default::default(),
            pending: VecDeque::new(),
        }
    }

    /// Accepts inbound streams of `protocol` from every peer from now on.
    pub(crate) fn accept(&mut self, protocol: StreamProtocol) {
        let mut p = self.protocols.write().unwrap_or_else(|e| e.into_inner());
        if !p.all.contains(&protocol) {
            p.all.push(protocol);
        }
    }

    /// Accepts inbound streams of `protocols` from `peer` from now on (on its connections
    /// now and later), until [`forget`](Self::forget). Other peers' streams of these protocols
    /// fail negotiation, so their senders get an error instead of a reset stream.
    pub(crate) fn accept_from(
        &mut self,
        peer: PeerId,
        protocols: impl IntoIterator<Item = StreamProtocol>,
    ) {
        let mut p = self.protocols.write().unwrap_or_else(|e| e.into_inner());
        let accepted = p.per_peer.entry(peer).or_default();
        for protocol in protocols {
            if !accepted.contains(&protocol) {
                accepted.push(protocol);
            }
        }
    }

    /// Forgets what was accepted from `peer` alone (its last connection closed: a new
    /// session prepares its streams again).
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.protocols
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .per_peer
            .remove(peer);
    }

    /// Opens a stream of `protocol` on `connection` to `peer`; the answer comes on `reply`.
    pub(crate) fn open(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        protocol: StreamProtocol,
        reply: OpenReply,
    ) {
        self.pending.push_back(ToSwarm::NotifyHandler {
            peer_id: peer,
            handler: NotifyHandler::One(connection),
            event: ToHandler::Open(OpenRequest { protocol, reply }),
        });
    }

    /// Lets `connection` close once it carries no stream (see [`ToHandler::Retire`]), or
    /// (`retire == false`) keeps it alive again.
    pub(crate) fn retire(&mut self, peer: PeerId, connection: ConnectionId, retire: bool) {
        self.pending.push_back(ToSwarm::NotifyHandler {
            peer_id: peer,
            handler: NotifyHandler::One(connection),
            event: if retire {
                ToHandler::Retire
            } else {
                ToHandler::Keep
            },
        });
    }

    fn handler(&self, peer: PeerId, connection: ConnectionId) -> Handler {
        Handler {
            peer,
            connection,
            protocols: self.protocols.clone(),
            requests: VecDeque::new(),
            inbound: VecDeque::new(),
            keep_alive: true,
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Inbound;

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer, connection))
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer, connection))
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        let (stream, protocol) = event;
        self.pending.push_back(ToSwarm::GenerateEvent(Inbound {
            peer,
            connection,
            protocol,
            stream,
        }));
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.pending.pop_front() {
            Some(e) => Poll::Ready(e),
            None => Poll::Pending,
        }
    }
}

/// One connection's side: negotiates inbound streams of the accepted protocols and the
/// outbound streams the driver asks for. Several outbound negotiations may run at once.
pub(crate) struct Handler {
    peer: PeerId,
    connection: ConnectionId,
    protocols: Protocols,
    requests: VecDeque<OpenRequest>,
    inbound: VecDeque<(Stream, StreamProtocol)>,
    /// Glueberry decides when its connections go (handshake timeout, disconnect, failed
    /// pings), so they are kept alive even without streams; a retired duplicate is not.
    keep_alive: bool,
}

impl ConnectionHandler for Handler {
    type FromBehaviour = ToHandler;
    type ToBehaviour = (Stream, StreamProtocol);
    type InboundProtocol = Upgrade;
    type OutboundProtocol = Upgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = (StreamProtocol, OpenReply);

    fn listen_protocol(&self) -> SubstreamProtocol<Upgrade, ()> {
        let accepted = self.protocols.read().unwrap_or_else(|e| e.into_inner());
        let mut protocols = accepted.all.clone();
        if let Some(mine) = accepted.per_peer.get(&self.peer) {
            protocols.extend(mine.iter().cloned());
        }
        SubstreamProtocol::new(Upgrade { protocols }, ())
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Upgrade, (StreamProtocol, OpenReply), Self::ToBehaviour>> {
        if let Some(inbound) = self.inbound.pop_front() {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(inbound));
        }
        if let Some(req) = self.requests.pop_front() {
            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(
                    Upgrade {
                        protocols: vec![req.protocol.clone()],
                    },
                    (req.protocol, req.reply),
                ),
            });
        }
        Poll::Pending
    }

    fn connection_keep_alive(&self) -> bool {
        self.keep_alive
    }

    fn on_behaviour_event(&mut self, event: ToHandler) {
        match event {
            ToHandler::Open(request) => self.requests.push_back(request),
            ToHandler::Retire => self.keep_alive = false,
            ToHandler::Keep => self.keep_alive = true,
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Upgrade, Upgrade, (), (StreamProtocol, OpenReply)>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: (stream, protocol),
                ..
            }) => self.inbound.push_back((stream, protocol)),
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: (stream, _),
                info: (_, reply),
            }) => {
                let _ = reply.send(Ok(stream));
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError {
                info: (protocol, reply),
                error,
            }) => {
                let error = match error {
                    StreamUpgradeError::Timeout => OpenError::Timeout,
                    StreamUpgradeError::NegotiationFailed => OpenError::Unsupported(protocol),
                    StreamUpgradeError::Io(e) => OpenError::Io(e.to_string()),
                    StreamUpgradeError::Apply(never) => match never {},
                };
                tracing::debug!(peer = %self.peer, connection = %self.connection, %error, "stream open failed");
                let _ = reply.send(Err(error));
            }
            _ => {}
        }
    }
}

/// Negotiates one of `protocols` and hands the raw stream over.
pub(crate) struct Upgrade {
    protocols: Vec<StreamProtocol>,
}

impl UpgradeInfo for Upgrade {
    type Info = StreamProtocol;
    type InfoIter = std::vec::IntoIter<StreamProtocol>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.protocols.clone().into_iter()
    }
}

impl InboundUpgrade<Stream> for Upgrade {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Infallible>>;

    fn upgrade_inbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        ready(Ok((stream, protocol)))
    }
}

impl OutboundUpgrade<Stream> for Upgrade {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Infallible>>;

    fn upgrade_outbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        ready(Ok((stream, protocol)))
    }
}
