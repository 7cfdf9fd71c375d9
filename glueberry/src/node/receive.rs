//! Received messages and events: queues and subscriptions.

use super::*;

impl Node {
    /// The queue of received messages of every stream (the handshake stream included) not
    /// received apart with [`messages_for`](Self::messages_for). Clone it freely: each
    /// message goes to exactly one receiver. Peers are served in turn, one message each, so
    /// a peer's backlog delays another's message by one message per busy peer; stream
    /// classes by [`Priority`](crate::Priority).
    pub fn messages(&self) -> Messages {
        self.inner.messages.clone()
    }

    /// A queue of its own for the messages of stream `name` (for instance `"handshake"`, or
    /// the consensus stream), so that they never wait behind other streams' messages in
    /// [`messages`](Self::messages). Messages of `name` already waiting there move to it, in
    /// order. Later calls for the same name share the queue while one of its clones is
    /// alive; when the last one is dropped, the stream goes back to `messages()` with what
    /// waits in its queue. Nothing is lost either way.
    pub fn messages_for(&self, name: &str) -> Messages {
        self.shared().inbox.messages_for(name)
    }

    /// Memory held for received messages now and at its peak, in bytes, against the receive
    /// budgets (docs/configuration.md, "Receive budgets").
    pub fn inbox_stats(&self) -> crate::InboxStats {
        self.shared().inbox.stats()
    }

    /// Subscribes to every event.
    pub fn subscribe_events(&self) -> Subscription {
        self.subscribe_filtered(Filter::all())
    }

    /// Subscribes to the events that pass `filter` (by peer, by state, or both).
    ///
    /// ```no_run
    /// # async fn f(node: glueberry::Node, validator: glueberry::PeerId) {
    /// use glueberry::{Event, Filter, RecvError, State};
    ///
    /// let mut lost = node.subscribe_filtered(
    ///     Filter::all().peers([validator]).states([State::Disconnected, State::Reconnecting]),
    /// );
    /// loop {
    ///     match lost.recv().await {
    ///         Ok(Event::Connection(e)) => println!("{} is {} ({:?})", e.peer, e.state, e.reason),
    ///         Ok(_) => {}
    ///         // This subscription fell behind: n events are gone, the next ones follow.
    ///         Err(RecvError::Lagged(n)) => println!("missed {n} events"),
    ///         Err(RecvError::Closed) => break,
    ///     }
    /// }
    /// # }
    /// ```
    pub fn subscribe_filtered(&self, filter: Filter) -> Subscription {
        self.shared().events.subscribe(filter).1
    }

    /// Subscribes to the events that pass `filter`, and returns with it the current state of
    /// every peer that passes it (peers not listed are Disconnected). The snapshot and the
    /// subscription fit: no change is missed or seen twice between them. Both follow the event
    /// stream, which can trail [`connection_state`](Self::connection_state) by the few events
    /// still on their way to the forwarder.
    pub fn subscribe_with_snapshot(&self, filter: Filter) -> (Vec<(PeerId, State)>, Subscription) {
        self.shared().events.subscribe(filter)
    }
}
