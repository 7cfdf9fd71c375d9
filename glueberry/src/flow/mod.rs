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
        }
    }

    /// Takes a place if not blocked; the place that reaches `high` blocks the ones after it.
    pub fn try_acquire(&mut self) -> bool {
        if self.blocked {
            return false;
        }
        self.queued += 1;
        self.peak = self.peak.max(self.queued);
        if self.queued >= self.high {
            self.blocked = true;
        }
        true
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

    /// Takes a place, waiting while the controller is blocked. Returns whether it had to wait.
    /// Cancel-safe: dropping the future takes nothing.
    pub async fn acquire(&self) -> bool {
        let mut waited = false;
        loop {
            let notified = self.unblocked.notified();
            tokio::pin!(notified);
            // Register before checking, so that a release between the check and the wait is
            // not missed.
            notified.as_mut().enable();
            if lock(&self.state).try_acquire() {
                return waited;
            }
            waited = true;
            notified.await;
        }
    }

    /// Takes a place if one is free now.
    pub fn try_acquire(&self) -> bool {
        lock(&self.state).try_acquire()
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
