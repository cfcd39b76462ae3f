//! The runtime's own errors: what went wrong with the broker or the set-up, as opposed
//! to what a handler reports ([`crate::HandlerError`]).

/// An error of the AMQP plumbing. A session that meets one is torn down and recovered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The broker connection or a channel failed.
    #[error("AMQP error: {0}")]
    Amqp(#[from] lapin::Error),
    /// TLS with the broker failed: its certificate is not trusted (see
    /// `amqp.tls.ca_file`) or does not name the URL's host, or it refused ours (or our
    /// lack of one). The text says which, and the settings to check.
    #[error("TLS with the broker failed, a certificate problem: {0}")]
    Tls(String),
    /// The settings are invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The broker refused to take responsibility for a published message.
    #[error("the broker nacked a message published to {exchange:?} with key {routing_key:?}")]
    Nacked {
        /// The exchange published to.
        exchange: String,
        /// The routing key.
        routing_key: String,
    },
    /// A mandatory message matched no queue.
    #[error("no queue is bound to {exchange:?} for key {routing_key:?}: the message was returned")]
    Unroutable {
        /// The exchange published to.
        exchange: String,
        /// The routing key.
        routing_key: String,
    },
    /// The broker did not confirm a publish in time (it may be blocking publishers).
    #[error(
        "the broker did not confirm a publish within {0:?} (is it blocking publishers on a \
         memory or disk alarm?)"
    )]
    ConfirmTimeout(std::time::Duration),
    /// Connecting, declaring the topology or starting to consume took longer than this.
    #[error("the broker did not finish setting up the session within {0:?}")]
    SetupTimeout(std::time::Duration),
    /// A delivery could not be acknowledged because its channel is gone.
    #[error("the channel of a delivery closed before it could be acknowledged")]
    ChannelGone,
    /// The broker cancelled the consumer (queue deleted, node down, …).
    #[error("the broker cancelled the consumer of {0:?}")]
    ConsumerCancelled(String),
    /// The work queue had messages ready while this idle consumer received none, or the
    /// broker counted no consumer on it (a quorum queue without a serving leader).
    #[error(
        "the consumer of {0:?} stalled: messages are ready but none are delivered, or the \
         broker counts no consumer on the queue"
    )]
    ConsumerStalled(String),
    /// An exchange or routing key is longer than the 255 bytes AMQP allows.
    #[error("the exchange or routing key {0:?}… is longer than 255 bytes")]
    NameTooLong(String),
    /// The worker's manifest contradicts its handler.
    #[error("invalid manifest: {0}")]
    Manifest(String),
    /// An envelope could not be serialized.
    #[error("cannot encode an envelope: {0}")]
    Encode(#[from] serde_json::Error),
}

impl RuntimeError {
    /// Whether the broker refused the user what it asked (403 `ACCESS_REFUSED`): a
    /// permission of `warren topology apply`'s users, not a fault of the broker.
    pub fn is_access_refused(&self) -> bool {
        matches!(self, RuntimeError::Amqp(error)
            if matches!(error.kind(), lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 403))
    }
}
