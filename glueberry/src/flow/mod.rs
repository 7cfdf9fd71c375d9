//! Flow control per (peer, stream): high and low watermarks over queued messages.
//!
//! [`Controller`] is the sans-IO rule; [`Gate`] makes it awaitable. A sender acquires a place
//! before queueing a message and the writer releases it once the message is taken for writing.
//! When the queue reaches the high watermark, senders wait until it drains to the low
//! watermark (hysteresis: they do not wake for every message written). Waiting is cancellable
//! (drop the future) and holds nothing. Controllers belong to one (peer, stream), so a stalled
//! peer never delays sends to another.

use std::sync::Mutex;

use tokio::sync::Notify;

use crate::shared::lock;

/// The watermark rule, with no I/O and no waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    high: usize,
    low: usize,
    queued: usize,
    blocked: bool,
    /// The most ever queued (for statistics and tests).
    peak: usize,
    /// Times it became blocked.
    engaged: u64,
}

impl Controller {
    /// A controller that blocks at `high` queued messages and unblocks at `low` (`low < high`;
    /// a `low` not below `high` is taken as `high - 1`).
    pub fn new(high: usize, low: usize) -> Self {
        let high = high.max(1);
        Self {
            high,
            low: low.min(high - 1),
            queued: 0,
            blocked: false,
            peak: 0,
            engaged: 0,
        }
    }

    /// Takes a place if not blocked; the place that reaches `high` blocks the ones after it.
    #[cfg(test)]
    pub fn try_acquire(&mut self) -> bool {
        self.acquire().is_some()
    }

    /// Takes a place if not blocked: `Some(engaged)`, where `engaged` says this place reached
    /// the high watermark and blocked the controller; `None` when blocked.
    pub fn acquire(&mut self) -> Option<bool> {
        if self.blocked {
            return None;
        }
        self.queued += 1;
        self.peak = self.peak.max(self.queued);
        if self.queued >= self.high {
            self.blocked = true;
            self.engaged += 1;
        }
        Some(self.blocked)
    }

    /// How many times the controller became blocked.
    #[cfg(test)]
    pub fn engaged(&self) -> u64 {
        self.engaged
    }

    /// Gives back `n` places; returns true if this unblocked the controller (wake the waiters).
    pub fn release(&mut self, n: usize) -> bool {
        self.queued = self.queued.saturating_sub(n);
        if self.blocked && self.queued <= self.low {
            self.blocked = false;
            return true;
        }
        false
    }

    /// Messages queued now.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// The most messages ever queued at once.
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// Whether senders must wait.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }
}

/// What [`Gate::acquire`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    /// The gate was blocked: the sender waited for the queue to drain to the low watermark.
    pub waited: bool,
    /// This place reached the high watermark and blocked the gate for the senders after it.
    pub engaged: bool,
}

/// A [`Controller`] shared by the senders and the writer of one stream.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<Controller>,
    unblocked: Notify,
}

impl Gate {
    /// A gate over `Controller::new(high, low)`.
    pub fn new(high: usize, low: usize) -> Self {
        Self {
            state: Mutex::new(Controller::new(high, low)),
            unblocked: Notify::new(),
        }
    }

    /// Takes a place, waiting while the controller is blocked. Cancel-safe: dropping the
    /// future takes nothing.
    pub async fn acquire(&self) -> Acquired {
        let mut waited = false;
        loop {
            let notified = self.unblocked.notified();
            tokio::pin!(notified);
            // Register before checking, so that a release between the check and the wait is
            // not missed.
            notified.as_mut().enable();
            if let Some(engaged) = lock(&self.state).acquire() {
                return Acquired { waited, engaged };
            }
            waited = true;
            notified.await;
        }
    }

    /// Takes a place if one is free now: `Some(engaged)` (see [`Controller::acquire`]), or
    /// `None` when blocked.
    pub fn try_acquire(&self) -> Option<bool> {
        lock(&self.state).acquire()
    }

    /// Gives back `n` places, waking every waiter if the queue drained to the low watermark.
    pub fn release(&self, n: usize) {
        if lock(&self.state).release(n) {
            self.unblocked.notify_waiters();
        }
    }

    /// A copy of the controller's state.
    pub fn snapshot(&self) -> Controller {
        lock(&self.state).clone()
    }
}

#[cfg(test)]
mod tests;
