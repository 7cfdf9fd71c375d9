//! The per-peer connection state machine, sans-IO: fed inputs, it returns what to do.
//!
//! It knows nothing of sockets, tasks or clocks; the driver feeds it what the swarm and the
//! API report and carries out its outputs. The same state and input always give the same
//! outputs, and every state change gives exactly one [`Output::Emit`].

use std::fmt;

/// Where a peer is in its connection lifecycle (the six states of Go Glueberry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum State {
    /// No connection.
    Disconnected,
    /// We are dialling.
    Connecting,
    /// Connected; the application's handshake has not finished.
    Connected,
    /// The handshake was finalized: encrypted streams are in use.
    Established,
    /// Waiting to dial again after a loss (lifecycle work, not reached yet).
    Reconnecting,
    /// Refusing the peer for a while after a failed handshake (lifecycle work, not reached yet).
    Cooldown,
}

impl State {
    /// Connecting, Connected or Established.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            State::Connecting | State::Connected | State::Established
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a peer went [`State::Disconnected`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The remote closed the connection cleanly.
    RemoteClosed,
    /// The connection failed: reset, I/O error or keep-alive timeout.
    Error(String),
    /// This node called `disconnect`.
    LocalRequest,
    /// The dial failed.
    DialFailed(String),
    /// This node is shutting down.
    Shutdown,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::RemoteClosed => f.write_str("remote closed the connection"),
            DisconnectReason::Error(e) => write!(f, "connection error: {e}"),
            DisconnectReason::LocalRequest => f.write_str("disconnect requested locally"),
            DisconnectReason::DialFailed(e) => write!(f, "dial failed: {e}"),
            DisconnectReason::Shutdown => f.write_str("node shutting down"),
        }
    }
}

/// What happened to the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The application asked to connect.
    DialRequested,
    /// Our dial failed.
    DialFailed(String),
    /// The first connection to the peer is up.
    ConnectionEstablished {
        /// Whether we dialled it.
        outbound: bool,
    },
    /// The last connection to the peer closed.
    ConnectionClosed(DisconnectReason),
    /// The application finalized the handshake.
    HandshakeFinalized,
    /// The application asked to disconnect.
    DisconnectRequested,
    /// The node is shutting down.
    Shutdown,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Dial the peer.
    Dial,
    /// Close every connection to the peer.
    Close,
    /// Tell subscribers the peer entered `state`.
    Emit {
        /// The new state.
        state: State,
        /// Why, for [`State::Disconnected`].
        reason: Option<DisconnectReason>,
    },
}

/// An input that the current state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{input} is not allowed in state {state}")]
pub struct Refused {
    /// The state.
    pub state: State,
    /// The input, named.
    pub input: &'static str,
}

/// One peer's state machine.
#[derive(Debug, Clone)]
pub struct Machine {
    state: State,
    outbound: Option<bool>,
    closing_locally: bool,
}

impl Default for Machine {
    fn default() -> Self {
        Self::new()
    }
}

impl Machine {
    /// A peer we know nothing of: Disconnected.
    pub fn new() -> Self {
        Self {
            state: State::Disconnected,
            outbound: None,
            closing_locally: false,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the current connection was dialled by us (`None` when not connected).
    pub fn is_outbound(&self) -> Option<bool> {
        self.outbound
    }

    fn enter(&mut self, state: State, reason: Option<DisconnectReason>, out: &mut Vec<Output>) {
        debug_assert_ne!(self.state, state);
        self.state = state;
        if state == State::Disconnected {
            self.outbound = None;
            self.closing_locally = false;
        }
        out.push(Output::Emit { state, reason });
    }

    /// Feeds one input; returns the outputs, or why the input is refused (then nothing
    /// changed).
    pub fn handle(&mut self, input: Input) -> Result<Vec<Output>, Refused> {
        let mut out = Vec::new();
        let refuse = |input| Refused {
            state: self.state,
            input,
        };
        match input {
            Input::DialRequested => match self.state {
                State::Disconnected | State::Reconnecting => {
                    self.enter(State::Connecting, None, &mut out);
                    out.push(Output::Dial);
                }
                // A dial is under way or a connection exists: nothing to do.
                State::Connecting | State::Connected | State::Established => {}
                State::Cooldown => return Err(refuse("connect")),
            },
            Input::DialFailed(reason) => {
                if self.state == State::Connecting {
                    self.enter(
                        State::Disconnected,
                        Some(DisconnectReason::DialFailed(reason)),
                        &mut out,
                    );
                }
            }
            Input::ConnectionEstablished { outbound } => match self.state {
                State::Disconnected | State::Connecting | State::Reconnecting | State::Cooldown => {
                    self.outbound = Some(outbound);
                    self.enter(State::Connected, None, &mut out);
                }
                State::Connected | State::Established => {}
            },
            Input::ConnectionClosed(reason) => {
                if self.state != State::Disconnected {
                    let reason = if self.closing_locally {
                        DisconnectReason::LocalRequest
                    } else {
                        reason
                    };
                    self.enter(State::Disconnected, Some(reason), &mut out);
                }
            }
            Input::HandshakeFinalized => match self.state {
                State::Connected => self.enter(State::Established, None, &mut out),
                _ => return Err(refuse("finalize_handshake")),
            },
            Input::DisconnectRequested => match self.state {
                State::Connecting | State::Connected | State::Established => {
                    self.closing_locally = true;
                    out.push(Output::Close);
                }
                _ => return Err(refuse("disconnect")),
            },
            Input::Shutdown => {
                if self.state != State::Disconnected {
                    out.push(Output::Close);
                    self.enter(
                        State::Disconnected,
                        Some(DisconnectReason::Shutdown),
                        &mut out,
                    );
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn emit(state: State, reason: Option<DisconnectReason>) -> Output {
        Output::Emit { state, reason }
    }

    #[test]
    fn outbound_lifecycle() {
        let mut m = Machine::new();
        assert_eq!(
            m.handle(Input::DialRequested).unwrap(),
            vec![emit(State::Connecting, None), Output::Dial]
        );
        assert_eq!(m.handle(Input::DialRequested).unwrap(), vec![]);
        assert_eq!(
            m.handle(Input::ConnectionEstablished { outbound: true })
                .unwrap(),
            vec![emit(State::Connected, None)]
        );
        assert_eq!(m.is_outbound(), Some(true));
        assert_eq!(
            m.handle(Input::HandshakeFinalized).unwrap(),
            vec![emit(State::Established, None)]
        );
        assert_eq!(
            m.handle(Input::DisconnectRequested).unwrap(),
            vec![Output::Close]
        );
        assert_eq!(
            m.handle(Input::ConnectionClosed(DisconnectReason::RemoteClosed))
                .unwrap(),
            vec![emit(
                State::Disconnected,
                Some(DisconnectReason::LocalRequest)
            )]
        );
        assert_eq!(m.is_outbound(), None);
    }

    #[test]
    fn refusals_change_nothing() {
        let mut m = Machine::new();
        assert!(m.handle(Input::HandshakeFinalized).is_err());
        assert!(m.handle(Input::DisconnectRequested).is_err());
        assert_eq!(m.state(), State::Disconnected);
        m.handle(Input::DialRequested).unwrap();
        assert_eq!(
            m.handle(Input::DialFailed("refused".into())).unwrap(),
            vec![emit(
                State::Disconnected,
                Some(DisconnectReason::DialFailed("refused".into()))
            )]
        );
    }

    fn input() -> impl Strategy<Value = Input> {
        prop_oneof![
            Just(Input::DialRequested),
            Just(Input::DialFailed("x".into())),
            any::<bool>().prop_map(|outbound| Input::ConnectionEstablished { outbound }),
            Just(Input::ConnectionClosed(DisconnectReason::RemoteClosed)),
            Just(Input::HandshakeFinalized),
            Just(Input::DisconnectRequested),
            Just(Input::Shutdown),
        ]
    }

    proptest! {
        #[test]
        fn one_event_per_state_change(inputs in proptest::collection::vec(input(), 0..64)) {
            let mut m = Machine::new();
            for i in inputs {
                let before = m.state();
                let copy = m.clone();
                match m.handle(i.clone()) {
                    Err(_) => prop_assert_eq!(m.state(), before),
                    Ok(out) => {
                        let emits: Vec<_> = out.iter().filter_map(|o| match o {
                            Output::Emit { state, .. } => Some(*state), _ => None }).collect();
                        if m.state() == before {
                            prop_assert!(emits.is_empty());
                        } else {
                            prop_assert_eq!(emits.last().copied(), Some(m.state()));
                        }
                        // Deterministic: the same state and input give the same outputs.
                        let mut again = copy;
                        prop_assert_eq!(again.handle(i).unwrap(), out);
                    }
                }
                prop_assert_eq!(m.is_outbound().is_some(), matches!(m.state(), State::Connected | State::Established));
            }
        }
    }
}
