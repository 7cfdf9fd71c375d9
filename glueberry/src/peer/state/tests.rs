use std::collections::HashSet;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn machine(dialable: bool) -> Machine {
    let mut m = Machine::new(Params::default(), 7);
    m.set_dialable(dialable);
    m
}

fn states(out: &[Output]) -> Vec<State> {
    out.iter()
        .filter_map(|o| match o {
            Output::Emit(c) => Some(c.state),
            _ => None,
        })
        .collect()
}

fn armed_at(out: &[Output], timer: Timer) -> Option<Instant> {
    out.iter().find_map(|o| match o {
        Output::Arm { timer: t, at } if *t == timer => Some(*at),
        _ => None,
    })
}

#[test]
fn outbound_lifecycle() {
    let t0 = Instant::now();
    let mut m = machine(true);
    let out = m.handle(Input::DialRequested, t0).unwrap();
    assert_eq!(states(&out), [State::Connecting]);
    assert!(out.contains(&Output::Dial));
    assert!(m.handle(Input::DialRequested, t0).unwrap().is_empty());
    let out = m
        .handle(Input::ConnectionEstablished { outbound: true }, t0)
        .unwrap();
    assert_eq!(states(&out), [State::Connected]);
    assert_eq!(
        armed_at(&out, Timer::Handshake),
        Some(t0 + Duration::from_secs(30))
    );
    assert_eq!(m.is_outbound(), Some(true));
    let out = m.handle(Input::HandshakeFinalized, t0).unwrap();
    assert_eq!(states(&out), [State::Established]);
    assert!(out.contains(&Output::Cancel(Timer::Handshake)));
    assert_eq!(
        m.handle(Input::DisconnectRequested, t0).unwrap(),
        [Output::Close]
    );
    let out = m
        .handle(Input::ConnectionClosed(DisconnectReason::RemoteClosed), t0)
        .unwrap();
    assert_eq!(
        states(&out),
        [State::Disconnected],
        "a local close does not reconnect"
    );
    assert!(
        matches!(&out[..], [Output::Emit(c)] if c.reason == Some(DisconnectReason::LocalRequest))
    );
    assert_eq!(m.is_outbound(), None);
}

#[test]
fn a_dropped_peer_is_reconnected_after_a_delay_chosen_by_the_reason() {
    for (reason, secs) in [
        (DisconnectReason::IdleTimeout, 1.0),
        (DisconnectReason::RemoteClosed, 3.0),
        (DisconnectReason::Error("reset".into()), 5.0),
    ] {
        let t0 = Instant::now();
        let mut m = machine(true);
        m.handle(Input::ConnectionEstablished { outbound: false }, t0)
            .unwrap();
        m.handle(Input::HandshakeFinalized, t0).unwrap();
        let out = m
            .handle(Input::ConnectionClosed(reason.clone()), t0)
            .unwrap();
        assert_eq!(states(&out), [State::Disconnected, State::Reconnecting]);
        let at = armed_at(&out, Timer::Reconnect).unwrap();
        let d = (at - t0).as_secs_f64();
        assert!((secs * 0.9..secs * 1.1).contains(&d), "{reason:?}: {d}");
        let out = m.handle(Input::TimerFired(Timer::Reconnect), at).unwrap();
        assert_eq!(states(&out), [State::Connecting]);
        assert!(out.contains(&Output::Dial));
        let out = m
            .handle(Input::ConnectionEstablished { outbound: true }, at)
            .unwrap();
        assert_eq!(states(&out), [State::Connected]);
        let out = m.handle(Input::HandshakeFinalized, at).unwrap();
        assert_eq!(states(&out), [State::Established]);
    }
}

#[test]
fn peers_outside_the_book_are_not_reconnected() {
    let t0 = Instant::now();
    let mut m = machine(false);
    m.handle(Input::ConnectionEstablished { outbound: false }, t0)
        .unwrap();
    let out = m
        .handle(Input::ConnectionClosed(DisconnectReason::RemoteClosed), t0)
        .unwrap();
    assert_eq!(states(&out), [State::Disconnected]);
}

#[test]
fn backoff_schedule_until_exhausted() {
    let mut now = Instant::now();
    let mut m = machine(true);
    m.handle(Input::DialRequested, now).unwrap();
    let mut delays = Vec::new();
    loop {
        let out = m.handle(Input::DialFailed("refused".into()), now).unwrap();
        match armed_at(&out, Timer::Reconnect) {
            Some(at) => {
                delays.push((at - now).as_secs_f64());
                now = at;
                let out = m.handle(Input::TimerFired(Timer::Reconnect), now).unwrap();
                assert!(out.contains(&Output::Dial));
            }
            None => {
                assert_eq!(states(&out), [State::Disconnected]);
                assert!(matches!(
                    &out[..],
                    [Output::Emit(Change {
                        reason: Some(DisconnectReason::ReconnectExhausted(_)),
                        ..
                    })]
                ));
                break;
            }
        }
    }
    let nominal = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0];
    assert_eq!(delays.len(), nominal.len(), "10 attempts by default");
    for (d, n) in delays.iter().zip(nominal) {
        assert!((n * 0.9..n * 1.1).contains(d), "{d} vs {n}");
    }
    assert_eq!(m.attempt(), 10);
}

#[test]
fn unlimited_attempts() {
    let params = Params {
        backoff: Backoff {
            max_attempts: None,
            ..Backoff::default()
        },
        ..Params::default()
    };
    let mut m = Machine::new(params, 1);
    m.set_dialable(true);
    let now = Instant::now();
    m.handle(Input::DialRequested, now).unwrap();
    for _ in 0..1000 {
        m.handle(Input::DialFailed("x".into()), now).unwrap();
        assert_eq!(m.state(), State::Reconnecting);
        m.handle(Input::TimerFired(Timer::Reconnect), now).unwrap();
    }
}

#[test]
fn a_peer_that_accepts_and_drops_does_not_reset_the_attempts() {
    let params = Params {
        backoff: Backoff {
            max_attempts: Some(3),
            ..Backoff::default()
        },
        ..Params::default()
    };
    let mut m = Machine::new(params, 3);
    m.set_dialable(true);
    let now = Instant::now();
    m.handle(Input::DialRequested, now).unwrap();
    let mut dials = 1;
    loop {
        m.handle(Input::ConnectionEstablished { outbound: true }, now)
            .unwrap();
        let out = m
            .handle(Input::ConnectionClosed(DisconnectReason::RemoteClosed), now)
            .unwrap();
        if m.state() == State::Disconnected {
            break;
        }
        assert!(armed_at(&out, Timer::Reconnect).is_some());
        m.handle(Input::TimerFired(Timer::Reconnect), now).unwrap();
        dials += 1;
    }
    assert_eq!(dials, 4, "one dial plus three attempts");
}

#[test]
fn handshake_timeout_cooldown_then_reconnect() {
    let t0 = Instant::now();
    let mut m = machine(true);
    let out = m
        .handle(Input::ConnectionEstablished { outbound: false }, t0)
        .unwrap();
    let deadline = armed_at(&out, Timer::Handshake).unwrap();
    let out = m
        .handle(Input::TimerFired(Timer::Handshake), deadline)
        .unwrap();
    assert_eq!(states(&out), [State::Cooldown]);
    assert!(out.contains(&Output::Close));
    let end = armed_at(&out, Timer::Cooldown).unwrap();
    assert_eq!(end - deadline, Duration::from_secs(60));
    // Inbound connections are refused during cooldown, and so is connect.
    assert_eq!(
        m.handle(Input::ConnectionEstablished { outbound: false }, deadline)
            .unwrap(),
        [Output::Close]
    );
    assert!(m.handle(Input::DialRequested, deadline).is_err());
    let out = m.handle(Input::TimerFired(Timer::Cooldown), end).unwrap();
    assert_eq!(states(&out), [State::Reconnecting]);
}

#[test]
fn finalizing_in_time_cancels_the_timeout() {
    let t0 = Instant::now();
    let mut m = machine(true);
    m.handle(Input::ConnectionEstablished { outbound: true }, t0)
        .unwrap();
    m.handle(Input::HandshakeFinalized, t0).unwrap();
    // The firing crossed the cancellation: it is ignored.
    assert!(
        m.handle(Input::TimerFired(Timer::Handshake), t0)
            .unwrap()
            .is_empty()
    );
    assert_eq!(m.state(), State::Established);
}

#[test]
fn blacklist_stops_everything() {
    let t0 = Instant::now();
    let mut m = machine(true);
    m.handle(Input::ConnectionEstablished { outbound: true }, t0)
        .unwrap();
    m.handle(Input::ConnectionClosed(DisconnectReason::RemoteClosed), t0)
        .unwrap();
    assert_eq!(m.state(), State::Reconnecting);
    let out = m.handle(Input::Blacklisted, t0).unwrap();
    assert_eq!(states(&out), [State::Disconnected]);
    assert!(out.contains(&Output::Cancel(Timer::Reconnect)));
    assert!(m.handle(Input::DialRequested, t0).unwrap_err().blacklisted);
    assert_eq!(
        m.handle(Input::ConnectionEstablished { outbound: false }, t0)
            .unwrap(),
        [Output::Close]
    );
    m.handle(Input::Unblacklisted, t0).unwrap();
    assert!(m.handle(Input::DialRequested, t0).is_ok());
}

#[test]
fn cancel_reconnection() {
    let t0 = Instant::now();
    let mut m = machine(true);
    assert!(m.handle(Input::ReconnectionCancelled, t0).is_err());
    m.handle(Input::DialRequested, t0).unwrap();
    m.handle(Input::DialFailed("x".into()), t0).unwrap();
    let out = m.handle(Input::ReconnectionCancelled, t0).unwrap();
    assert_eq!(states(&out), [State::Disconnected]);
    assert!(out.contains(&Output::Cancel(Timer::Reconnect)));
    // While an attempt's dial is under way, the series stops too, and the dial is dropped.
    m.handle(Input::DialRequested, t0).unwrap();
    m.handle(Input::DialFailed("x".into()), t0).unwrap();
    let out = m.handle(Input::TimerFired(Timer::Reconnect), t0).unwrap();
    assert_eq!(states(&out), [State::Connecting]);
    let out = m.handle(Input::ReconnectionCancelled, t0).unwrap();
    assert_eq!(states(&out), [State::Disconnected]);
    assert!(out.contains(&Output::Close));
    assert!(
        m.handle(Input::DialFailed("x".into()), t0)
            .unwrap()
            .is_empty()
    );
    // A first dial (`connect`) is no reconnection: nothing to cancel.
    m.handle(Input::DialRequested, t0).unwrap();
    assert!(m.handle(Input::ReconnectionCancelled, t0).is_err());
}

#[test]
fn a_restarted_peer_handshakes_again() {
    let t0 = Instant::now();
    let mut m = machine(true);
    m.handle(Input::ConnectionEstablished { outbound: true }, t0)
        .unwrap();
    m.handle(Input::HandshakeFinalized, t0).unwrap();
    let out = m.handle(Input::HandshakeStreamOpened, t0).unwrap();
    assert_eq!(states(&out), [State::Connected]);
    assert!(armed_at(&out, Timer::Handshake).is_some());
    assert!(m.handle(Input::HandshakeFinalized, t0).is_ok());
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        Just(Input::DialRequested),
        Just(Input::DialFailed("x".into())),
        any::<bool>().prop_map(|outbound| Input::ConnectionEstablished { outbound }),
        Just(Input::ConnectionClosed(DisconnectReason::RemoteClosed)),
        Just(Input::ConnectionClosed(DisconnectReason::IdleTimeout)),
        Just(Input::HandshakeStreamOpened),
        Just(Input::StreamsPrepared),
        Just(Input::HandshakeFinalized),
        Just(Input::TimerFired(Timer::Handshake)),
        Just(Input::TimerFired(Timer::Cooldown)),
        Just(Input::TimerFired(Timer::Reconnect)),
        Just(Input::TimerFired(Timer::Reconnect)),
        Just(Input::Blacklisted),
        Just(Input::Unblacklisted),
        Just(Input::DisconnectRequested),
        Just(Input::ReconnectionCancelled),
        Just(Input::Shutdown),
        Just(Input::Faulted),
        Just(Input::Rejected("wrong chain".into())),
        Just(Input::Banned(std::time::SystemTime::UNIX_EPOCH)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn invariants(
        dialable: bool,
        persistent: bool,
        seed: u64,
        max_attempts in 0u32..5,
        steps in proptest::collection::vec((input(), 0u64..100_000), 0..80),
    ) {
        let params = Params {
            backoff: Backoff { max_attempts: Some(max_attempts), ..Backoff::default() },
            ..Params::default()
        };
        let mut m = Machine::new(params, seed);
        m.set_dialable(dialable);
        m.set_persistent(persistent);
        let mut now = Instant::now();
        let mut armed: HashSet<Timer> = HashSet::new();
        let mut dials_since_progress = 0u32;
        for (input, dt) in steps {
            now += Duration::from_millis(dt);
            let before = m.state();
            let copy = m.clone();
            let result = m.handle(input.clone(), now);
            let out = match result {
                Err(_) => {
                    prop_assert_eq!(m.state(), before, "a refusal changes nothing");
                    continue;
                }
                Ok(out) => out,
            };
            // Deterministic.
            let mut again = copy;
            prop_assert_eq!(&again.handle(input.clone(), now).unwrap(), &out);
            // Events: a chain of real changes ending in the current state; none without one.
            let mut prev = before;
            for s in states(&out) {
                prop_assert_ne!(s, prev, "an event without a state change");
                prev = s;
            }
            prop_assert_eq!(prev, m.state());
            // Timers: only the current state's timer may be armed afterwards.
            for o in &out {
                match o {
                    Output::Arm { timer, at } => { prop_assert!(*at >= now); armed.insert(*timer); }
                    Output::Cancel(timer) => { armed.remove(timer); }
                    Output::Dial => {
                        prop_assert!(!m.is_blacklisted(), "no dial of a blacklisted peer");
                        dials_since_progress += 1;
                    }
                    _ => {}
                }
            }
            for t in &armed {
                prop_assert_eq!(Some(*t), m.state().timer(), "timer {:?} left armed in {:?}", t, m.state());
            }
            if m.is_blacklisted() {
                prop_assert!(matches!(m.state(), State::Disconnected), "blacklisted in {:?}", m.state());
            }
            if matches!(input, Input::DialRequested | Input::HandshakeFinalized) {
                dials_since_progress = u32::from(out.contains(&Output::Dial));
            }
            // Attempts bounded: one dial asked for plus at most max_attempts retries (a
            // persistent peer's are not).
            prop_assert!(persistent || dials_since_progress <= 1 + max_attempts);
            for o in &out {
                if let Output::Arm { timer: Timer::Reconnect, at } = o {
                    let most = if persistent { Duration::from_secs(33) } else { Duration::from_secs(330) };
                    prop_assert!(*at - now <= most, "a reconnect {:?} away", *at - now);
                }
            }
            prop_assert_eq!(m.is_outbound().is_some(), matches!(m.state(), State::Connected | State::Established));
        }
    }
}

#[test]
fn a_persistent_peer_is_retried_for_ever_at_most_the_cap_apart() {
    let params = Params {
        backoff: Backoff {
            max_attempts: Some(2),
            ..Backoff::default()
        },
        ..Params::default()
    };
    let mut m = Machine::new(params, 3);
    m.set_dialable(true);
    m.set_persistent(true);
    let mut now = Instant::now();
    m.handle(Input::DialRequested, now).unwrap();
    let mut delays = Vec::new();
    for _ in 0..20 {
        let out = m.handle(Input::DialFailed("refused".into()), now).unwrap();
        assert_eq!(states(&out), [State::Reconnecting], "never gives up");
        let at = armed_at(&out, Timer::Reconnect).unwrap();
        delays.push(at - now);
        now = at;
        let out = m.handle(Input::TimerFired(Timer::Reconnect), now).unwrap();
        assert!(out.contains(&Output::Dial));
    }
    assert!(
        delays.iter().all(|d| *d <= Duration::from_secs(33)),
        "{delays:?}"
    );
    assert!(
        delays[10..].iter().all(|d| *d >= Duration::from_secs(27)),
        "{delays:?}"
    );
    // Not persistent: the same machine gives up after its two attempts.
    let mut m = Machine::new(
        Params {
            backoff: Backoff {
                max_attempts: Some(2),
                ..Backoff::default()
            },
            ..Params::default()
        },
        3,
    );
    m.set_dialable(true);
    m.handle(Input::DialRequested, now).unwrap();
    let mut gave_up = false;
    for _ in 0..4 {
        let out = m.handle(Input::DialFailed("refused".into()), now).unwrap();
        if states(&out) == [State::Disconnected] {
            gave_up = true;
            break;
        }
        m.handle(Input::TimerFired(Timer::Reconnect), now).unwrap();
    }
    assert!(gave_up);
}

#[test]
fn a_rejected_peer_is_kept_out_for_the_rejection_cooldown() {
    let t0 = Instant::now();
    let mut m = machine(true);
    m.handle(Input::ConnectionEstablished { outbound: false }, t0)
        .unwrap();
    let out = m.handle(Input::Rejected("wrong chain".into()), t0).unwrap();
    assert!(out.contains(&Output::Close));
    assert_eq!(states(&out), [State::Cooldown]);
    assert_eq!(
        armed_at(&out, Timer::Cooldown),
        Some(t0 + Duration::from_secs(300))
    );
    let change = out.iter().find_map(|o| match o {
        Output::Emit(c) => Some(c.clone()),
        _ => None,
    });
    assert_eq!(
        change.unwrap().reason,
        Some(DisconnectReason::Rejected("wrong chain".into()))
    );
    // Its connections are closed, both ways, and it is not dialled.
    assert_eq!(
        m.handle(Input::ConnectionEstablished { outbound: false }, t0)
            .unwrap(),
        [Output::Close]
    );
    assert!(m.handle(Input::DialRequested, t0).is_err());
    // After the cooldown, a book peer is reconnected.
    let out = m
        .handle(
            Input::TimerFired(Timer::Cooldown),
            t0 + Duration::from_secs(300),
        )
        .unwrap();
    assert_eq!(states(&out), [State::Reconnecting]);
}

#[test]
fn a_ban_disconnects_and_refuses_until_lifted() {
    let t0 = Instant::now();
    let until = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(99);
    let mut m = machine(true);
    m.handle(Input::ConnectionEstablished { outbound: true }, t0)
        .unwrap();
    let out = m.handle(Input::Banned(until), t0).unwrap();
    assert!(out.contains(&Output::Close));
    assert_eq!(
        out.last(),
        Some(&Output::Emit(Change {
            state: State::Disconnected,
            reason: Some(DisconnectReason::Banned { until }),
            attempt: None,
            delay: None,
        }))
    );
    assert!(m.handle(Input::DialRequested, t0).is_err());
    m.handle(Input::Unblacklisted, t0).unwrap();
    assert!(m.handle(Input::DialRequested, t0).is_ok());
}
