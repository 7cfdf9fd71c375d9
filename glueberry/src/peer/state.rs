//! The per-peer connection state machine, sans-IO: fed inputs and `Instant`s, it returns what
//! to do (dial, close, arm or cancel a timer, emit an event).
//!
//! It reads no clock and touches no socket: the driver feeds it what the swarm and the API
//! report and carries out its outputs, and tests feed it virtual time. The same state and
//! input always give the same outputs; every state change gives exactly one
//! [`Output::Emit`]; each state's timer is armed when the state is entered and cancelled when
//! it is left. `docs/lifecycle.md` has the transition table.

use std::fmt;
use std::time::{Duration, Instant};

use super::backoff::Backoff;

/// Where a peer is in its connection lifecycle (the six states of Go Glueberry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum State {
    /// No connection, nothing planned.
    Disconnected,
    /// A dial is under way.
    Connecting,
    /// Connected; the application's handshake has not been finalized. The handshake timer runs.
    Connected,
    /// The handshake was finalized: encrypted streams are in use.
    Established,
    /// Waiting for the next reconnection attempt. The reconnect timer runs.
    Reconnecting,
    /// Refusing the peer for a while after a handshake timeout. The cooldown timer runs.
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

    /// The timer that runs in this state, if any.
    pub(crate) fn timer(self) -> Option<Timer> {
        match self {
            State::Connected => Some(Timer::Handshake),
            State::Reconnecting => Some(Timer::Reconnect),
            State::Cooldown => Some(Timer::Cooldown),
            _ => None,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a peer left an active state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The remote closed the connection cleanly.
    RemoteClosed,
    /// The connection failed: reset or I/O error.
    Error(String),
    /// The connection was idle too long.
    IdleTimeout,
    /// The peer stopped answering: no ping answered for `ping_interval + ping_timeout` over
    /// TCP, or QUIC's idle timeout (`ping_timeout`). The connection was severed
    /// (docs/lifecycle.md, "Liveness").
    Unresponsive,
    /// This node called `disconnect` or `cancel_reconnection`.
    LocalRequest,
    /// The handshake was not finalized in time.
    HandshakeTimeout,
    /// The peer was blacklisted.
    Blacklisted,
    /// A dial failed.
    DialFailed(String),
    /// Every reconnection attempt failed; the last error is given.
    ReconnectExhausted(String),
    /// This node is shutting down.
    Shutdown,
    /// The peer sent `max_faults` bad frames within `fault_window`: it is kept out for
    /// `fault_cooldown` (docs/admission.md, "Faulting peers").
    Faults,
    /// The application rejected the peer (the built-in handshake's check, or
    /// `Node::reject_peer`), with its reason: it is kept out for `rejection_cooldown`.
    Rejected(String),
    /// The peer's score fell to the ban threshold (docs/scoring.md): it is refused both ways
    /// until `until`.
    Banned {
        /// When the ban ends.
        until: std::time::SystemTime,
    },
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::RemoteClosed => f.write_str("remote closed the connection"),
            DisconnectReason::Error(e) => write!(f, "connection error: {e}"),
            DisconnectReason::IdleTimeout => f.write_str("idle timeout"),
            DisconnectReason::Unresponsive => f.write_str("peer stopped answering"),
            DisconnectReason::LocalRequest => f.write_str("closed on local request"),
            DisconnectReason::HandshakeTimeout => f.write_str("handshake timeout"),
            DisconnectReason::Blacklisted => f.write_str("peer blacklisted"),
            DisconnectReason::DialFailed(e) => write!(f, "dial failed: {e}"),
            DisconnectReason::ReconnectExhausted(e) => {
                write!(f, "reconnection attempts exhausted (last: {e})")
            }
            DisconnectReason::Shutdown => f.write_str("node shutting down"),
            DisconnectReason::Faults => f.write_str("too many bad frames"),
            DisconnectReason::Rejected(r) => write!(f, "rejected: {r}"),
            DisconnectReason::Banned { until } => {
                let left = until
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default();
                write!(f, "banned for {}s more", left.as_secs())
            }
        }
    }
}

/// The timers a peer can have; at most one runs at a time (the current state's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Connected too long without a finalized handshake.
    Handshake,
    /// End of the cooldown.
    Cooldown,
    /// Next reconnection attempt.
    Reconnect,
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
    /// The peer opened a new handshake stream while Established: it restarted or lost its
    /// state, and handshakes again.
    HandshakeStreamOpened,
    /// The application prepared streams (first phase of the handshake, or more names later).
    /// Allowed while Connected or Established; changes no state.
    StreamsPrepared,
    /// The application finalized the handshake.
    HandshakeFinalized,
    /// A timer armed by an [`Output::Arm`] fired.
    TimerFired(Timer),
    /// The peer was blacklisted.
    Blacklisted,
    /// The peer was taken off the blacklist.
    Unblacklisted,
    /// The application asked to disconnect.
    DisconnectRequested,
    /// The application cancelled reconnection.
    ReconnectionCancelled,
    /// The node is shutting down.
    Shutdown,
    /// The peer kept sending bad frames: close it and refuse it for the fault cooldown.
    Faulted,
    /// The application rejected the peer: close it and refuse it for the rejection cooldown.
    Rejected(String),
    /// The peer is banned until the given time: like a blacklisting, with that reason; it ends
    /// with [`Input::Unblacklisted`].
    Banned(std::time::SystemTime),
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Dial the peer.
    Dial,
    /// Close every connection to the peer.
    Close,
    /// Arm `timer` to fire at `at` (replacing any earlier arming of it).
    Arm {
        /// Which timer.
        timer: Timer,
        /// When it fires.
        at: Instant,
    },
    /// Cancel `timer`.
    Cancel(Timer),
    /// Tell subscribers the peer entered `state`.
    Emit(Change),
}

/// A state change, as reported to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The new state.
    pub state: State,
    /// Why: set when leaving an active state (and for a failed attempt).
    pub reason: Option<DisconnectReason>,
    /// For Connecting and Reconnecting during reconnection: the attempt number (1-based).
    pub attempt: Option<u32>,
    /// For Reconnecting: how long until the attempt.
    pub delay: Option<Duration>,
}

/// An input that the current state does not allow. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {input} in state {state}")]
pub struct Refused {
    /// The state.
    pub state: State,
    /// The input, named as the operation the application attempted.
    pub input: &'static str,
    /// Whether the peer is blacklisted (the reason for refusing a connect).
    pub blacklisted: bool,
}

/// The timing parameters of the machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Handshake timeout from Connected; `None` disables it.
    pub handshake_timeout: Option<Duration>,
    /// Cooldown after a handshake timeout.
    pub cooldown: Duration,
    /// Cooldown after too many faults.
    pub fault_cooldown: Duration,
    /// Cooldown after the application rejected the peer.
    pub rejection_cooldown: Duration,
    /// Reconnection schedule.
    pub backoff: Backoff,
    /// Longest reconnection delay of a persistent peer (before jitter); its attempts never
    /// run out.
    pub persistent_max_delay: Duration,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            handshake_timeout: Some(Duration::from_secs(30)),
            cooldown: Duration::from_secs(60),
            fault_cooldown: Duration::from_secs(60),
            rejection_cooldown: Duration::from_secs(300),
            backoff: Backoff::default(),
            persistent_max_delay: Duration::from_secs(30),
        }
    }
}

/// One peer's state machine.
#[derive(Debug, Clone)]
pub struct Machine {
    params: Params,
    state: State,
    outbound: Option<bool>,
    closing_locally: bool,
    /// Reconnection attempts made in the current series.
    attempt: u32,
    /// Whether the peer can be dialled (it is in the address book): only such peers are
    /// reconnected.
    dialable: bool,
    /// Whether the peer is to be kept connected for good: reconnected without limit, at most
    /// `persistent_max_delay` apart.
    persistent: bool,
    blacklisted: bool,
    /// xorshift64* state for jitter: deterministic for a given seed.
    rng: u64,
    /// Why the current (or last) cooldown began.
    cooldown_reason: DisconnectReason,
}

impl Machine {
    /// A Disconnected peer. `seed` drives the jitter, so that two machines with the same seed
    /// and inputs behave identically.
    pub fn new(params: Params, seed: u64) -> Self {
        Self {
            params,
            state: State::Disconnected,
            outbound: None,
            closing_locally: false,
            attempt: 0,
            dialable: false,
            persistent: false,
            blacklisted: false,
            rng: seed | 1,
            cooldown_reason: DisconnectReason::HandshakeTimeout,
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

    /// Whether the peer is blacklisted.
    pub fn is_blacklisted(&self) -> bool {
        self.blacklisted
    }

    /// Whether the peer may be dialled and reconnected (it is in the address book). This
    /// changes no state and emits nothing.
    pub fn set_dialable(&mut self, dialable: bool) {
        self.dialable = dialable;
    }

    /// Whether the peer is kept connected for good (a persistent peer): when dialable, it is
    /// reconnected without limit, at most `persistent_max_delay` apart. This changes no state
    /// and emits nothing.
    pub fn set_persistent(&mut self, persistent: bool) {
        self.persistent = persistent;
    }

    /// The backoff of this peer: a persistent peer's has no attempt limit and a lower cap.
    fn backoff(&self) -> Backoff {
        let b = &self.params.backoff;
        if self.persistent {
            Backoff {
                max: b.max.min(self.params.persistent_max_delay),
                max_attempts: None,
                ..b.clone()
            }
        } else {
            b.clone()
        }
    }

    /// Reconnection attempts made in the current series.
    #[cfg(test)]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    fn unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11; // 53 random bits
        (r as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    fn change(state: State) -> Change {
        Change {
            state,
            reason: None,
            attempt: None,
            delay: None,
        }
    }

    /// Moves to `change.state`: cancels the old state's timer, arms the new state's, emits.
    /// `timer_delay` is the delay of the new state's timer.
    fn enter(
        &mut self,
        change: Change,
        timer_delay: Option<Duration>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        debug_assert_ne!(self.state, change.state);
        if let Some(t) = self.state.timer() {
            out.push(Output::Cancel(t));
        }
        self.state = change.state;
        match change.state {
            State::Disconnected | State::Cooldown | State::Reconnecting => {
                self.outbound = None;
                self.closing_locally = false;
            }
            _ => {}
        }
        if let (Some(t), Some(d)) = (self.state.timer(), timer_delay) {
            out.push(Output::Arm {
                timer: t,
                at: now + d,
            });
        }
        out.push(Output::Emit(change));
    }

    fn can_reconnect(&self) -> bool {
        self.dialable && !self.blacklisted && self.backoff().allows(self.attempt)
    }

    /// Enters Reconnecting with `delay` (jittered here), counting the next attempt.
    fn reconnect(
        &mut self,
        reason: Option<DisconnectReason>,
        delay: Duration,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let unit = self.unit();
        let delay = self.backoff().jittered(delay, unit);
        let change = Change {
            state: State::Reconnecting,
            reason,
            attempt: Some(self.attempt + 1),
            delay: Some(delay),
        };
        self.enter(change, Some(delay), now, out);
    }

    /// Feeds one input at time `now`; returns the outputs, or why the input is refused.
    pub fn handle(&mut self, input: Input, now: Instant) -> Result<Vec<Output>, Refused> {
        let mut out = Vec::new();
        let refuse = |m: &Self, input| Refused {
            state: m.state,
            input,
            blacklisted: m.blacklisted,
        };
        match input {
            Input::DialRequested => {
                if self.blacklisted {
                    return Err(refuse(self, "connect"));
                }
                match self.state {
                    State::Disconnected | State::Reconnecting => {
                        self.attempt = 0;
                        self.enter(Self::change(State::Connecting), None, now, &mut out);
                        out.push(Output::Dial);
                    }
                    State::Connecting | State::Connected | State::Established => {}
                    State::Cooldown => return Err(refuse(self, "connect")),
                }
            }
            Input::DialFailed(error) => {
                if self.state == State::Connecting {
                    if self.can_reconnect() {
                        let backoff = self.backoff();
                        let delay = if self.attempt == 0 {
                            backoff.base
                        } else {
                            backoff.nominal(self.attempt)
                        };
                        self.reconnect(
                            Some(DisconnectReason::DialFailed(error)),
                            delay,
                            now,
                            &mut out,
                        );
                    } else {
                        let reason = if self.attempt > 0 {
                            DisconnectReason::ReconnectExhausted(error)
                        } else {
                            DisconnectReason::DialFailed(error)
                        };
                        let change = Change {
                            reason: Some(reason),
                            ..Self::change(State::Disconnected)
                        };
                        self.enter(change, None, now, &mut out);
                    }
                }
            }
            Input::ConnectionEstablished { outbound } => match self.state {
                _ if self.blacklisted => out.push(Output::Close),
                // Cooldown holds for inbound connections too.
                State::Cooldown => out.push(Output::Close),
                State::Disconnected | State::Connecting | State::Reconnecting => {
                    // The attempt count goes on until the handshake is finalized: a peer that
                    // accepts and drops at once must not make reconnection endless.
                    self.outbound = Some(outbound);
                    let timeout = self.params.handshake_timeout;
                    self.enter(Self::change(State::Connected), timeout, now, &mut out);
                }
                State::Connected | State::Established => {}
            },
            Input::ConnectionClosed(reason) => {
                if matches!(self.state, State::Connected | State::Established) {
                    let local = self.closing_locally;
                    let reason = if local {
                        DisconnectReason::LocalRequest
                    } else {
                        reason
                    };
                    let change = Change {
                        reason: Some(reason.clone()),
                        ..Self::change(State::Disconnected)
                    };
                    self.enter(change, None, now, &mut out);
                    if !local && self.can_reconnect() {
                        let backoff = self.backoff();
                        let delay = if self.attempt == 0 {
                            backoff.first_delay(&reason)
                        } else {
                            backoff.nominal(self.attempt)
                        };
                        self.reconnect(None, delay, now, &mut out);
                    }
                }
            }
            Input::HandshakeStreamOpened => {
                if self.state == State::Established {
                    let timeout = self.params.handshake_timeout;
                    self.enter(Self::change(State::Connected), timeout, now, &mut out);
                }
            }
            Input::StreamsPrepared => match self.state {
                State::Connected | State::Established => {}
                _ => return Err(refuse(self, "prepare_streams")),
            },
            Input::HandshakeFinalized => match self.state {
                State::Connected => {
                    self.attempt = 0;
                    self.enter(Self::change(State::Established), None, now, &mut out);
                }
                _ => return Err(refuse(self, "finalize_handshake")),
            },
            Input::TimerFired(timer) => {
                if self.state.timer() != Some(timer) {
                    // A timer of a state already left: its cancellation crossed its firing.
                    return Ok(out);
                }
                match timer {
                    Timer::Handshake => {
                        out.push(Output::Close);
                        let change = Change {
                            reason: Some(DisconnectReason::HandshakeTimeout),
                            ..Self::change(State::Cooldown)
                        };
                        let cooldown = self.params.cooldown;
                        self.cooldown_reason = DisconnectReason::HandshakeTimeout;
                        self.enter(change, Some(cooldown), now, &mut out);
                    }
                    Timer::Cooldown => {
                        if self.can_reconnect() {
                            let delay = self.params.backoff.base;
                            self.reconnect(None, delay, now, &mut out);
                        } else {
                            let change = Change {
                                reason: Some(self.cooldown_reason.clone()),
                                ..Self::change(State::Disconnected)
                            };
                            self.enter(change, None, now, &mut out);
                        }
                    }
                    Timer::Reconnect => {
                        self.attempt += 1;
                        let change = Change {
                            attempt: Some(self.attempt),
                            ..Self::change(State::Connecting)
                        };
                        self.enter(change, None, now, &mut out);
                        out.push(Output::Dial);
                    }
                }
            }
            Input::Blacklisted | Input::Banned(_) => {
                let reason = match input {
                    Input::Banned(until) => DisconnectReason::Banned { until },
                    _ => DisconnectReason::Blacklisted,
                };
                self.blacklisted = true;
                if self.state != State::Disconnected {
                    if matches!(
                        self.state,
                        State::Connecting | State::Connected | State::Established
                    ) {
                        out.push(Output::Close);
                    }
                    let change = Change {
                        reason: Some(reason),
                        ..Self::change(State::Disconnected)
                    };
                    self.enter(change, None, now, &mut out);
                }
            }
            Input::Unblacklisted => self.blacklisted = false,
            Input::DisconnectRequested => match self.state {
                State::Connected | State::Established => {
                    // The state changes when the swarm reports the close.
                    self.closing_locally = true;
                    out.push(Output::Close);
                }
                State::Connecting | State::Reconnecting | State::Cooldown => {
                    if self.state == State::Connecting {
                        out.push(Output::Close);
                    }
                    let change = Change {
                        reason: Some(DisconnectReason::LocalRequest),
                        ..Self::change(State::Disconnected)
                    };
                    self.enter(change, None, now, &mut out);
                }
                State::Disconnected => return Err(refuse(self, "disconnect")),
            },
            Input::ReconnectionCancelled => match self.state {
                // Waiting for the next attempt, or an attempt's dial under way: the series
                // stops (a dial that still succeeds gives a connection like any inbound one).
                State::Reconnecting | State::Connecting
                    if self.state == State::Reconnecting || self.attempt > 0 =>
                {
                    if self.state == State::Connecting {
                        out.push(Output::Close);
                    }
                    let change = Change {
                        reason: Some(DisconnectReason::LocalRequest),
                        ..Self::change(State::Disconnected)
                    };
                    self.enter(change, None, now, &mut out);
                }
                _ => return Err(refuse(self, "cancel_reconnection")),
            },
            Input::Shutdown => {
                if self.state != State::Disconnected {
                    if matches!(
                        self.state,
                        State::Connecting | State::Connected | State::Established
                    ) {
                        out.push(Output::Close);
                    }
                    let change = Change {
                        reason: Some(DisconnectReason::Shutdown),
                        ..Self::change(State::Disconnected)
                    };
                    self.enter(change, None, now, &mut out);
                }
            }
            Input::Faulted => {
                let cooldown = self.params.fault_cooldown;
                self.keep_out(DisconnectReason::Faults, cooldown, now, &mut out);
            }
            Input::Rejected(reason) => {
                let cooldown = self.params.rejection_cooldown;
                self.keep_out(DisconnectReason::Rejected(reason), cooldown, now, &mut out);
            }
        }
        Ok(out)
    }

    /// Closes the peer and keeps it out for `cooldown`: even if it left meanwhile, a new
    /// connection is closed at once. (Already cooling down: that cooldown stands.)
    fn keep_out(
        &mut self,
        reason: DisconnectReason,
        cooldown: Duration,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        if self.blacklisted {
            return; // refused for good already (and Disconnected)
        }
        if matches!(
            self.state,
            State::Connecting | State::Connected | State::Established
        ) {
            out.push(Output::Close);
        }
        if self.state != State::Cooldown {
            self.cooldown_reason = reason.clone();
            let change = Change {
                reason: Some(reason),
                ..Self::change(State::Cooldown)
            };
            self.enter(change, Some(cooldown), now, out);
        }
    }
}

#[cfg(test)]
mod tests;
