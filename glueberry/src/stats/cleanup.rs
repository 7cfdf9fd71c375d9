//! The statistics cleanup task: every `interval`, removes the statistics of peers that have
//! been Disconnected for at least `max_age`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::Registry;
use crate::telemetry as m;

pub(crate) async fn run(
    registry: Arc<Registry>,
    interval: Duration,
    max_age: Duration,
    token: CancellationToken,
) {
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = token.cancelled() => break,
            _ = ticks.tick() => {
                let pruned = registry.prune(Instant::now(), max_age);
                if pruned > 0 {
                    tracing::debug!(pruned, "peer statistics removed");
                    metrics::counter!(m::STATS_PRUNED).increment(pruned as u64);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use libp2p::PeerId;

    use super::*;
    use crate::peer::State;

    #[tokio::test(start_paused = true)]
    async fn removes_peers_gone_longer_than_the_max_age() {
        let registry = Arc::new(Registry::new(16));
        let interval = Duration::from_secs(3600);
        let max_age = Duration::from_secs(24 * 3600);
        let (gone, connected) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        registry
            .peer(gone, t0)
            .state_changed(State::Disconnected, None, false, t0);
        let c = registry.peer(connected, t0);
        c.connection_up(true, t0);
        c.state_changed(State::Established, Some(true), false, t0);
        let token = CancellationToken::new();
        let task = tokio::spawn(run(registry.clone(), interval, max_age, token.clone()));
        // Just before a day has passed, at the 23rd tick: still there.
        tokio::time::sleep(Duration::from_secs(23 * 3600 + 1800)).await;
        assert!(registry.get(&gone).is_some());
        // The 24th tick finds it a day old.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(registry.get(&gone).is_none());
        assert!(registry.get(&connected).is_some(), "connected peers stay");
        token.cancel();
        task.await.unwrap();
    }
}
