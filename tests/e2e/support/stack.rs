//! The shared servers a test runs against (RabbitMQ, Redis and the MongoDB-compatible server
//! that `make test` starts) and each test's namespace in them: its own queue prefix, database
//! and admin token, in [`test_settings`].

use std::net::SocketAddr;
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use sprayer_shared::Settings;

/// Loopback addresses of the shared servers (started by `make test`).
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Redis.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// MongoDB: `SPRAYER_MONGODB_URL` when set, else the local server.
pub fn mongodb_url() -> String {
    std::env::var("SPRAYER_MONGODB_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into())
}

/// A short random name for namespaces.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// Settings for a test: its own queue prefix and database, short retry tiers, port 0.
pub fn test_settings() -> Settings {
    let namespace = unique("t");
    let mut settings = Settings::default();
    settings.amqp.url = AMQP_URL.into();
    settings.amqp.prefix = format!("{namespace}.");
    settings.amqp.retry_tiers = vec![
        Duration::from_millis(500),
        Duration::from_secs(1),
        Duration::from_secs(2),
    ];
    settings.amqp.queue_expires = Some(Duration::from_secs(600));
    settings.redis.url = REDIS_URL.into();
    settings.mongodb.url = mongodb_url();
    settings.mongodb.database = format!("sprayer_{namespace}");
    settings.accepter.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.admin.token = Some(unique("admin-").into());
    settings.admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    // The tests' peers run on loopback: allow it explicitly, as an operator would a private
    // network. Rate limits are off but in the tests of rate limits.
    settings.webhook.allow_networks = vec!["127.0.0.0/8".parse().expect("a network")];
    settings.accepter.rate_per_second = 0;
    settings.feeder.batch_wait = Duration::from_millis(20);
    settings.deliverer.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.deliverer.token_secret = Some(unique("ws-token-secret-for-the-tests-").into());
    settings.deliverer.sweep_interval = Duration::from_millis(200);
    settings.deliverer.conn_ttl = Duration::from_secs(3);
    settings
}

/// The test settings with the `ws` channel served beside `http`.
pub fn serve_ws(settings: &mut Settings) {
    settings.accepter.channels = vec![
        sprayer_shared::model::Channel::Http,
        sprayer_shared::model::Channel::Ws,
    ];
}

/// Sends the logs of the services a test runs in its own process to the test's output, which
/// the test harness shows when the test fails: warnings, and the broker connections the
/// services make (`SPRAYER_TEST_LOG`, a `RUST_LOG`-style filter, changes what is shown).
pub fn log_to_test_output() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let filter = std::env::var("SPRAYER_TEST_LOG")
            .ok()
            .and_then(|filter| tracing_subscriber::EnvFilter::try_new(filter).ok())
            .unwrap_or_else(|| {
                tracing_subscriber::EnvFilter::new("warn,sprayer_shared::amqp=info")
            });
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    });
}

/// Fails loudly, naming the server, when one of the shared servers does not answer. Sends the
/// logs of the test's services to its output first (see [`log_to_test_output`]).
pub async fn require_servers() {
    log_to_test_output();
    let amqp = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default()).await;
    assert!(
        amqp.is_ok(),
        "RabbitMQ is not reachable at {AMQP_URL}: run `make test` (it starts it)"
    );
    let redis = async {
        let client = redis::Client::open(REDIS_URL)?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    }
    .await;
    assert!(
        redis.is_ok(),
        "Redis is not reachable at {REDIS_URL}: run `make test` (it starts it)"
    );
    let mongo = async {
        let client = mongodb::Client::with_uri_str(mongodb_url()).await?;
        client
            .database("admin")
            .run_command(mongodb::bson::doc! { "ping": 1 })
            .await
    }
    .await;
    assert!(
        mongo.is_ok(),
        "MongoDB is not reachable at {}: run `make test` (it starts it)",
        mongodb_url()
    );
}

/// Messages ready in `queue` (0 when it does not exist).
pub async fn queue_depth(queue: &str) -> u32 {
    queue_depth_at(AMQP_URL, queue).await
}

/// Messages ready in `queue` of the broker at `url` (0 when it does not exist).
pub async fn queue_depth_at(url: &str, queue: &str) -> u32 {
    let connection = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .expect("rabbitmq");
    let channel = connection.create_channel().await.expect("channel");
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let depth = match channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
    {
        Ok(declared) => declared.message_count(),
        Err(_) => 0,
    };
    let _ = connection.close(200, "bye".into()).await;
    depth
}
