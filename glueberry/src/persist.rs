//! The book writer task: saves snapshots of the address book off the driver's task.
//!
//! The driver publishes each new snapshot on a `watch` channel (only the latest matters, so
//! the queue can never grow); this task writes it with the store's atomic save on a blocking
//! thread, and publishes the version it has written, so that callers can wait until a change
//! is on disk. It ends after writing the last snapshot once the driver has dropped its sender.

use std::sync::Arc;

use tokio::sync::watch;

use crate::book::{BookError, Store};

/// One state of the book, numbered.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub(crate) version: u64,
    pub(crate) bytes: Option<Arc<Vec<u8>>>,
}

/// The last snapshot written (or attempted).
#[derive(Debug, Clone, Default)]
pub(crate) struct Saved {
    pub(crate) version: u64,
    pub(crate) error: Option<Arc<BookError>>,
}

pub(crate) async fn run(
    store: Store,
    mut snapshots: watch::Receiver<Snapshot>,
    saved: watch::Sender<Saved>,
) {
    let store = Arc::new(store);
    loop {
        let changed = snapshots.changed().await;
        let snap = snapshots.borrow_and_update().clone();
        if let Some(bytes) = snap.bytes.filter(|_| snap.version > saved.borrow().version) {
            let s = store.clone();
            let result = tokio::task::spawn_blocking(move || s.save(&bytes)).await;
            let error = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(Arc::new(e)),
                Err(e) => Some(Arc::new(BookError::Io {
                    path: store.path().to_owned(),
                    source: std::io::Error::other(format!("book writer failed: {e}")),
                })),
            };
            if let Some(e) = &error {
                tracing::error!(error = %e, "saving the address book failed");
                metrics::counter!(crate::telemetry::ADDRESS_BOOK_SAVE_ERRORS).increment(1);
            }
            saved.send_replace(Saved {
                version: snap.version,
                error,
            });
        }
        if changed.is_err() {
            break;
        }
    }
}
