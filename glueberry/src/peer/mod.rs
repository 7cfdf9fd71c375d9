//! Peers: the connection state machine and the reconnection schedule, both sans-IO.

pub mod backoff;
pub mod state;

pub use backoff::Backoff;
pub use state::{Change, DisconnectReason, Input, Machine, Output, Params, Refused, State, Timer};
