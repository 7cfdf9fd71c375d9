use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

#[test]
fn blocks_at_high_and_unblocks_at_low() {
    let mut c = Controller::new(4, 1);
    for _ in 0..4 {
        assert!(c.try_acquire());
    }
    assert!(c.is_blocked());
    assert!(!c.try_acquire());
    assert!(!c.release(1), "3 queued: still above the low watermark");
    assert!(!c.try_acquire());
    assert!(!c.release(1));
    assert!(c.release(1), "1 queued: back at the low watermark");
    assert!(c.try_acquire());
    assert_eq!(c.peak(), 4);
}

proptest! {
    #[test]
    fn never_more_than_high_queued(ops in proptest::collection::vec(any::<bool>(), 0..300), high in 1usize..20, low in 0usize..20) {
        let mut c = Controller::new(high, low);
        for acquire in ops {
            if acquire { c.try_acquire(); } else { c.release(1); }
            prop_assert!(c.queued() <= high);
            prop_assert!(c.peak() <= high);
            // Blocked only above the low watermark; never blocked below high unless draining.
            prop_assert!(!c.is_blocked() || c.queued() > c.low);
            prop_assert!(c.is_blocked() || c.queued() < high);
        }
    }
}

/// Whether `fut` is still pending after every other task has run (virtual time: nothing else
/// can happen in between).
async fn pending<F: std::future::Future>(fut: F) -> bool {
    tokio::time::timeout(Duration::from_secs(3600), fut)
        .await
        .is_err()
}

#[tokio::test(start_paused = true)]
async fn acquire_waits_at_high_and_wakes_at_low() {
    let gate = Arc::new(Gate::new(3, 1));
    for _ in 0..3 {
        assert!(!gate.acquire().await.waited, "no wait below high");
    }
    assert!(pending(gate.acquire()).await, "blocked at high");
    let g = gate.clone();
    let waiter = tokio::spawn(async move { g.acquire().await });
    tokio::task::yield_now().await;
    gate.release(1);
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "2 queued is above the low watermark");
    gate.release(1);
    let acquired = waiter.await.unwrap();
    assert!(acquired.waited, "woken at low, and it says it waited");
    assert!(!acquired.engaged, "2 queued after it: below high");
    assert_eq!(gate.snapshot().engaged(), 1);
}

#[tokio::test(start_paused = true)]
async fn cancelled_waits_take_nothing() {
    let gate = Gate::new(2, 0);
    gate.acquire().await;
    gate.acquire().await;
    assert!(pending(gate.acquire()).await);
    assert!(pending(gate.acquire()).await);
    gate.release(2);
    assert_eq!(
        gate.snapshot().queued(),
        0,
        "the cancelled acquires hold no place"
    );
    assert_eq!(gate.try_acquire(), Some(false));
    assert_eq!(
        gate.try_acquire(),
        Some(true),
        "the second place reaches high"
    );
    assert_eq!(gate.try_acquire(), None);
}

#[tokio::test(start_paused = true)]
async fn many_waiters_all_wake() {
    let gate = Arc::new(Gate::new(2, 0));
    gate.acquire().await;
    gate.acquire().await;
    let waiters: Vec<_> = (0..10)
        .map(|_| {
            let g = gate.clone();
            tokio::spawn(async move { g.acquire().await })
        })
        .collect();
    tokio::task::yield_now().await;
    gate.release(2);
    // Two get places at once; the others block again at high and wake at the next drain.
    for _ in 0..5 {
        tokio::task::yield_now().await;
        let q = gate.snapshot().queued();
        gate.release(q);
    }
    for w in waiters {
        assert!(w.await.unwrap().waited);
    }
}
