//! Peers: the connection state machine.

pub mod state;

pub use state::{DisconnectReason, Input, Machine, Output, State};
