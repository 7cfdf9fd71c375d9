use std::time::{Duration, Instant};

use libp2p::PeerId;
use proptest::prelude::*;

use super::*;

#[test]
fn penalties_add_up_to_a_disconnect_then_a_ban() {
    let t0 = Instant::now();
    let mut s = Scores::new(Config::default());
    let p = PeerId::random();
    assert_eq!(s.report(p, Severity::Medium, t0), Outcome::Lowered(-10.0));
    assert_eq!(s.report(p, Severity::High, t0), Outcome::Disconnect(-50.0));
    assert_eq!(s.report(p, Severity::Low, t0), Outcome::Disconnect(-51.0));
    assert_eq!(s.report(p, Severity::High, t0), Outcome::Disconnect(-91.0));
    assert_eq!(
        s.report(p, Severity::High, t0),
        Outcome::Ban {
            score: -131.0,
            until: t0 + Duration::from_secs(3600)
        }
    );
    assert_eq!(s.score(&p, t0), 0.0, "the ban resets the score");
}

#[test]
fn scores_decay_by_half_every_half_life_and_are_forgotten() {
    let t0 = Instant::now();
    let mut s = Scores::new(Config::default());
    let p = PeerId::random();
    s.report(p, Severity::High, t0);
    let at = |m: u64| t0 + Duration::from_secs(60 * m);
    assert!((s.score(&p, at(10)) - -20.0).abs() < 1e-9);
    assert!((s.score(&p, at(20)) - -10.0).abs() < 1e-9);
    // Decayed, the same faults no longer add up to a disconnect.
    assert_eq!(s.report(p, Severity::Low, at(20)), Outcome::Lowered(-11.0));
    assert_eq!(s.forget_old(at(20)), 1);
    assert_eq!(
        s.forget_old(at(20 + 10 * 11)),
        0,
        "decayed to nothing: forgotten"
    );
    assert_eq!(s.score(&p, at(200)), 0.0);
}

#[test]
fn a_fatal_verdict_bans_at_once() {
    let t0 = Instant::now();
    let mut s = Scores::new(Config::default());
    assert!(matches!(
        s.report(PeerId::random(), Severity::Fatal, t0),
        Outcome::Ban { score, .. } if score == -100.0
    ));
}

proptest! {
    /// Whatever the verdicts and times: the score is never positive, never below the ban
    /// threshold (a ban resets it), decays monotonically towards zero between verdicts, and a
    /// disconnect or ban comes exactly when the threshold is crossed.
    #[test]
    fn invariants(steps in proptest::collection::vec((0u8..4, 0u64..1_200), 0..100)) {
        let config = Config::default();
        let mut s = Scores::new(config.clone());
        let p = PeerId::random();
        let mut now = Instant::now();
        for (sev, dt) in steps {
            let before = s.score(&p, now);
            now += Duration::from_secs(dt);
            let decayed = s.score(&p, now);
            prop_assert!(decayed <= 0.0 && decayed >= before - 1e-9);
            let severity = [Severity::Low, Severity::Medium, Severity::High, Severity::Fatal][sev as usize];
            match s.report(p, severity, now) {
                Outcome::Lowered(v) => prop_assert!(v > config.disconnect_below),
                Outcome::Disconnect(v) => {
                    prop_assert!(v <= config.disconnect_below && v > config.ban_below)
                }
                Outcome::Ban { score, until } => {
                    prop_assert!(score <= config.ban_below);
                    prop_assert_eq!(until, now + config.ban_duration);
                    prop_assert_eq!(s.score(&p, now), 0.0);
                }
            }
            prop_assert!(s.score(&p, now) > config.ban_below);
        }
    }
}
