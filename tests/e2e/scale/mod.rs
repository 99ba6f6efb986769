//! Clusters of the test's own: RabbitMQ nodes with quorum queues and a Redis Cluster.

mod rabbitmq_cluster;
mod redis_cluster;
