//! Clusters of the test's own.
//!
//! - [`rabbitmq_cluster`]: three RabbitMQ nodes with quorum queues; a node stopped mid-send.
//! - [`redis_cluster`]: the core flows on a Redis Cluster; a node stopped mid-send.
//! - [`redis_cluster_ws`]: WebSocket inboxes on a Redis Cluster, and one over TLS.

mod rabbitmq_cluster;
mod redis_cluster;
mod redis_cluster_ws;
