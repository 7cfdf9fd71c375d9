//! libp2p's own metrics (feature `libp2p-metrics`): connections, dials, listeners, identify and
//! ping, in a `prometheus-client` registry, next to glueberry's own metrics (which go through
//! the `metrics` facade, see [`telemetry`](crate::telemetry)).
//!
//! ```no_run
//! # fn config() -> glueberry::Config { unimplemented!() }
//! use glueberry::libp2p_metrics::{Registry, encode};
//!
//! let mut registry = Registry::default();
//! let config = config().with_libp2p_metrics(&mut registry);
//! // ... run the node, then on each scrape:
//! let text = encode(&registry);
//! # let _ = text;
//! ```

pub use libp2p::metrics::{Metrics, Registry};
pub use prometheus_client;

/// The registry's metrics in the Prometheus text format (without the final `# EOF` line, so
/// that it can be followed by other metrics).
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode_registry(&mut text, registry);
    text
}
