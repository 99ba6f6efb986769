//! Why a service could not start: one error for every service, naming the store or listener
//! that failed, with room for what only one service can fail at (`E`: a dispatcher's channel
//! client, a deliverer's node id).

use std::convert::Infallible;

use crate::amqp::AmqpError;
use crate::listen::ListenError;

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError<E = Infallible> {
    /// Redis could not be set up (a TLS file that cannot be used among the causes).
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// MongoDB could not be set up.
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// RabbitMQ could not be set up (its TLS files among the causes).
    #[error("{0}")]
    Amqp(#[from] AmqpError),
    /// A listener could not be bound or its TLS files used.
    #[error("{0}")]
    Listen(#[from] ListenError),
    /// What only this service can fail at.
    #[error(transparent)]
    Service(E),
}
