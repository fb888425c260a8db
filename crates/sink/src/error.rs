//! Why a record was not published: [`PublishError`], with its class (retry, refuse, give up)
//! and a [`Reason`] from one closed list, which is also the `reason` label of
//! `activity_relay_publish_failures_total` and `activity_relay_dead_letters_total`.

use std::fmt;

/// The reason a publish failed. One list for every sink, so that the dispatcher and the
/// sinks match on variants rather than on strings, and dashboards see one vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    // --- The broker is not reachable or not usable.
    /// No connection to the broker right now (also: inside the reconnect backoff).
    Disconnected,
    /// The sink could not connect at start-up and is still trying.
    NotConnected,
    /// A connection attempt failed.
    ConnectFailed,
    /// A channel (AMQP) could not be opened.
    ChannelFailed,
    /// The channel closed under a publish.
    ChannelClosed,
    /// The connection closed before the confirmation came.
    ConnectionClosed,
    /// Every broker of the cluster is down or unreachable.
    BrokerDown,
    /// The broker refused our credentials or permissions.
    Unauthorized,
    /// The producer failed fatally (Kafka idempotence); it is replaced.
    ProducerFatal,
    /// The producer went away before the confirmation.
    ProducerClosed,
    // --- The broker did not confirm.
    /// No confirmation within the configured timeout.
    Timeout,
    /// The broker said no (AMQP `basic.nack`).
    Nack,
    /// The channel is not in confirm mode.
    Unconfirmed,
    /// The client's local queue is full.
    QueueFull,
    /// Not enough in-sync replicas.
    NotEnoughReplicas,
    /// The partition has no leader right now.
    LeaderUnavailable,
    /// The broker's own storage failed.
    BrokerStorage,
    /// Any other broker error (the detail says which).
    BrokerError,
    // --- The destination.
    /// No JetStream stream captures the subject.
    NoStream,
    /// The topic does not exist.
    UnknownTopic,
    /// The partition does not exist.
    UnknownPartition,
    /// The topic does not exist and only types outside the taxonomy are routed to it.
    UnknownTypeTopic,
    /// Nothing routes the message (AMQP `basic.return`).
    Unroutable,
    /// A topic could not be created.
    CreateTopicFailed,
    /// The rendered topic, subject or routing key is not valid for the broker.
    InvalidDestination,
    // --- The record.
    /// Larger than the broker takes.
    TooLarge,
    /// The broker rejects the record itself.
    InvalidRecord,
    // --- Shutdown.
    /// Buffered records could not be flushed at close.
    FlushFailed,
    // --- The file sink.
    DiskFull,
    PermissionDenied,
    NotFound,
    Io,
    // --- Set by the dispatcher.
    /// The sink returned fewer results than messages (a sink bug).
    NoResult,
    /// The broker kept refusing the record (`[dispatch] max_refusals`).
    Refused,
    /// `[dispatch] max_attempts` reached.
    MaxAttempts,
}

impl Reason {
    /// Every reason, in the order of the documentation.
    pub const ALL: [Reason; 35] = [
        Reason::Disconnected,
        Reason::NotConnected,
        Reason::ConnectFailed,
        Reason::ChannelFailed,
        Reason::ChannelClosed,
        Reason::ConnectionClosed,
        Reason::BrokerDown,
        Reason::Unauthorized,
        Reason::ProducerFatal,
        Reason::ProducerClosed,
        Reason::Timeout,
        Reason::Nack,
        Reason::Unconfirmed,
        Reason::QueueFull,
        Reason::NotEnoughReplicas,
        Reason::LeaderUnavailable,
        Reason::BrokerStorage,
        Reason::BrokerError,
        Reason::NoStream,
        Reason::UnknownTopic,
        Reason::UnknownPartition,
        Reason::UnknownTypeTopic,
        Reason::Unroutable,
        Reason::CreateTopicFailed,
        Reason::InvalidDestination,
        Reason::TooLarge,
        Reason::InvalidRecord,
        Reason::FlushFailed,
        Reason::DiskFull,
        Reason::PermissionDenied,
        Reason::NotFound,
        Reason::Io,
        Reason::NoResult,
        Reason::Refused,
        Reason::MaxAttempts,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        use Reason::*;
        match self {
            Disconnected => "disconnected",
            NotConnected => "not_connected",
            ConnectFailed => "connect_failed",
            ChannelFailed => "channel_failed",
            ChannelClosed => "channel_closed",
            ConnectionClosed => "connection_closed",
            BrokerDown => "broker_down",
            Unauthorized => "unauthorized",
            ProducerFatal => "producer_fatal",
            ProducerClosed => "producer_closed",
            Timeout => "timeout",
            Nack => "nack",
            Unconfirmed => "unconfirmed",
            QueueFull => "queue_full",
            NotEnoughReplicas => "not_enough_replicas",
            LeaderUnavailable => "leader_unavailable",
            BrokerStorage => "broker_storage",
            BrokerError => "broker_error",
            NoStream => "no_stream",
            UnknownTopic => "unknown_topic",
            UnknownPartition => "unknown_partition",
            UnknownTypeTopic => "unknown_type_topic",
            Unroutable => "unroutable",
            CreateTopicFailed => "create_topic_failed",
            InvalidDestination => "invalid_destination",
            TooLarge => "too_large",
            InvalidRecord => "invalid_record",
            FlushFailed => "flush_failed",
            DiskFull => "disk_full",
            PermissionDenied => "permission_denied",
            NotFound => "not_found",
            Io => "io_error",
            NoResult => "no_result",
            Refused => "refused",
            MaxAttempts => "max_attempts",
        }
    }

    /// Whether a failure for this reason means the connection (or channel) it happened on
    /// should not be used again: the sink drops it and the next publish reconnects.
    pub fn breaks_connection(self) -> bool {
        use Reason::*;
        matches!(
            self,
            Disconnected | ChannelClosed | ConnectionClosed | Timeout | Unconfirmed
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a record was not published.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PublishError {
    /// Worth retrying (broker down, timeout, nack, closed channel, …).
    #[error("{reason}: {detail}")]
    Retryable { reason: Reason, detail: String },
    /// The broker will never take this record (too large, invalid destination, …): the
    /// dispatcher dead-letters it.
    #[error("{reason} (permanent): {detail}")]
    Permanent { reason: Reason, detail: String },
    /// The broker is up and refuses this record, but an operator could change that
    /// (nothing routes it: no queue bound, no such topic): the dispatcher retries it a
    /// bounded number of times (`[dispatch] max_refusals`), then dead-letters it and moves
    /// on, so that one record cannot stall everything behind it.
    #[error("{reason} (refused): {detail}")]
    Refused { reason: Reason, detail: String },
}

impl PublishError {
    pub fn retryable(reason: Reason, detail: impl Into<String>) -> PublishError {
        PublishError::Retryable {
            reason,
            detail: detail.into(),
        }
    }
    pub fn permanent(reason: Reason, detail: impl Into<String>) -> PublishError {
        PublishError::Permanent {
            reason,
            detail: detail.into(),
        }
    }
    pub fn refused(reason: Reason, detail: impl Into<String>) -> PublishError {
        PublishError::Refused {
            reason,
            detail: detail.into(),
        }
    }
    /// Why (also the metric label, with [`Reason::as_str`]).
    pub fn reason(&self) -> Reason {
        match self {
            PublishError::Retryable { reason, .. }
            | PublishError::Permanent { reason, .. }
            | PublishError::Refused { reason, .. } => *reason,
        }
    }
    pub fn is_permanent(&self) -> bool {
        matches!(self, PublishError::Permanent { .. })
    }
    pub fn is_refusal(&self) -> bool {
        matches!(self, PublishError::Refused { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_snake_case() {
        use Reason::*;
        let all = Reason::ALL;
        let labels: std::collections::HashSet<&str> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), all.len());
        for l in labels {
            assert!(l.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{l}");
        }
        let e = PublishError::refused(Unroutable, "no queue");
        assert_eq!(e.reason(), Unroutable);
        assert!(e.is_refusal() && !e.is_permanent());
        assert_eq!(e.to_string(), "unroutable (refused): no queue");
    }
}
