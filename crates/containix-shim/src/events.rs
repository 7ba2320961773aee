//! Task events sent to containerd (`/tasks/create`, `/tasks/exit`, ...).

use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::{
    Context, event::Event, protos::protobuf::MessageDyn, publisher::RemotePublisher,
};
use tokio::sync::mpsc;
use tracing::warn;

/// Receives the events the task service emits, in order.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Sends one event; delivery failures are logged, never returned.
    async fn publish(&self, topic: String, event: Box<dyn MessageDyn>);
}

/// Publishes events to containerd over its ttrpc socket, in the order they were emitted.
pub struct RemoteEvents {
    queue: mpsc::UnboundedSender<(String, Box<dyn MessageDyn>)>,
}

impl RemoteEvents {
    /// Forwards events for `namespace` through `publisher` from a background task.
    pub fn new(publisher: RemotePublisher, namespace: String) -> Arc<Self> {
        let (queue, mut events) = mpsc::unbounded_channel::<(String, Box<dyn MessageDyn>)>();
        tokio::spawn(async move {
            while let Some((topic, event)) = events.recv().await {
                if let Err(e) = publisher
                    .publish(Context::default(), &topic, &namespace, event)
                    .await
                {
                    warn!("cannot publish {topic} to containerd: {e}");
                }
            }
        });
        Arc::new(RemoteEvents { queue })
    }
}

#[async_trait]
impl EventSink for RemoteEvents {
    async fn publish(&self, topic: String, event: Box<dyn MessageDyn>) {
        if self.queue.send((topic.clone(), event)).is_err() {
            warn!("event queue closed, dropping {topic}");
        }
    }
}

/// Sends `event` under its own topic.
pub async fn emit<E: Event + MessageDyn + 'static>(sink: &dyn EventSink, event: E) {
    sink.publish(event.topic(), Box::new(event)).await;
}
