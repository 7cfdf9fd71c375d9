//! A peer's connection state machine fed any sequence of inputs at any times (two bytes each:
//! the input, the time step). Never panics, and keeps its invariants: deterministic; an event
//! for every state change and none without one; only the current state's timer armed; no dial
//! of a blacklisted peer, which stays Disconnected; a direction only while connected.

#![no_main]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use glueberry::DisconnectReason;
use glueberry::unstable::machines::{Backoff, Input, Output, Params, Peer, Timer};
use libfuzzer_sys::fuzz_target;

fn input(b: u8) -> Input {
    match b % 22 {
        0 => Input::DialRequested,
        1 => Input::DialFailed("refused".into()),
        2 => Input::ConnectionEstablished { outbound: true },
        3 => Input::ConnectionEstablished { outbound: false },
        4 => Input::ConnectionClosed(DisconnectReason::RemoteClosed),
        5 => Input::ConnectionClosed(DisconnectReason::Unresponsive),
        6 => Input::HandshakeStreamOpened,
        7 => Input::StreamsPrepared,
        8 => Input::HandshakeFinalized,
        9 => Input::TimerFired(Timer::Handshake),
        10 => Input::TimerFired(Timer::Cooldown),
        11 | 12 => Input::TimerFired(Timer::Reconnect),
        13 => Input::Blacklisted,
        14 => Input::Unblacklisted,
        15 => Input::DisconnectRequested,
        16 => Input::ReconnectionCancelled,
        17 => Input::Shutdown,
        18 => Input::Faulted,
        19 => Input::Rejected("wrong chain".into()),
        20 => Input::Banned(std::time::SystemTime::UNIX_EPOCH),
        _ => Input::ConnectionClosed(DisconnectReason::Error("reset".into())),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&setup, steps)) = data.split_first() else {
        return;
    };
    let params = Params {
        backoff: Backoff {
            max_attempts: Some(u32::from(setup % 4)),
            ..Backoff::default()
        },
        ..Params::default()
    };
    let mut m = Peer::new(params, u64::from(setup));
    m.set_dialable(setup & 0x10 != 0);
    m.set_persistent(setup & 0x20 != 0);
    let mut now = Instant::now();
    let mut armed: HashSet<Timer> = HashSet::new();
    for step in steps.chunks_exact(2) {
        now += Duration::from_millis(u64::from(step[1]) * 500);
        let input = input(step[0]);
        let before = m.state();
        let copy = m.clone();
        let Ok(out) = m.handle(input.clone(), now) else {
            assert_eq!(m.state(), before, "a refusal changes nothing");
            continue;
        };
        let mut again = copy;
        assert_eq!(again.handle(input, now).unwrap(), out, "deterministic");
        let mut state = before;
        for o in &out {
            match o {
                Output::Emit(c) => {
                    assert_ne!(c.state, state, "an event without a change");
                    state = c.state;
                }
                Output::Arm { timer, at } => {
                    assert!(*at >= now);
                    armed.insert(*timer);
                }
                Output::Cancel(timer) => {
                    armed.remove(timer);
                }
                Output::Dial => assert!(!m.is_blacklisted(), "a blacklisted peer dialled"),
                Output::Close => {}
            }
        }
        assert_eq!(state, m.state(), "the last event is the state");
        let timer = match m.state() {
            glueberry::State::Connected => Some(Timer::Handshake),
            glueberry::State::Reconnecting => Some(Timer::Reconnect),
            glueberry::State::Cooldown => Some(Timer::Cooldown),
            _ => None,
        };
        assert!(
            armed.iter().all(|t| Some(*t) == timer),
            "timers {armed:?} in {:?}",
            m.state()
        );
        if m.is_blacklisted() {
            assert_eq!(m.state(), glueberry::State::Disconnected);
        }
        let connected = matches!(
            m.state(),
            glueberry::State::Connected | glueberry::State::Established
        );
        assert_eq!(m.is_outbound().is_some(), connected);
    }
});
