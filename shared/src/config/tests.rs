//! Unit tests of loading and checking the settings.

use super::*;

#[test]
fn defaults_are_valid() {
    assert!(Settings::default().validate().is_ok());
}

#[test]
fn every_unreadable_key_is_reported_at_once() {
    let figment = Figment::new().merge(Toml::string(
        "[amqp]\nprefetch = \"many\"\nprefix = \"p.\"\n[redis]\ngroup_shards = -1\n[nonsense]\nx = 1\n",
    ));
    let error = extract_every_problem(&figment).expect_err("three problems");
    assert_eq!(error.problems.len(), 3, "{error}");
    assert!(error.problems[0].starts_with("amqp.prefetch"), "{error}");
}

#[test]
fn amqp_url_takes_a_comma_separated_list_of_brokers() {
    let mut settings = Settings::default();
    settings.amqp.url =
        "amqp://u:p@rabbit-0:5672/%2f, amqp://u:p@rabbit-1:5672/%2f,amqps://u:p@rabbit-2/%2f"
            .into();
    assert!(settings.validate().is_ok());
    settings.amqp.url = "amqp://u:secret@rabbit-0:5672/%2f,http://rabbit-1,".into();
    let error = settings.validate().expect_err("a bad address");
    assert_eq!(
        error.problems,
        ["amqp.url: address 2 of 2 is not an amqp:// or amqps:// URL"]
    );
    assert!(!error.to_string().contains("secret"), "{error}");
    settings.amqp.url = " , ".into();
    let error = settings.validate().expect_err("no broker");
    assert!(error.problems[0].contains("at least one"), "{error}");
}

#[test]
fn redis_url_lists_seed_nodes_of_a_cluster_only_in_cluster_mode() {
    let mut settings = Settings::default();
    settings.redis.url = "redis://a:6379,redis://b:6379".into();
    let error = settings.validate().expect_err("a list for one server");
    assert_eq!(
        error.problems,
        [
            "redis.url lists several servers: set redis.cluster = true for a Redis Cluster, or name one server"
        ]
    );
    settings.redis.cluster = true;
    assert!(settings.validate().is_ok());
    settings.redis.url = " redis://:secret@a:7000, redis://:secret@b:7001 ,".into();
    assert!(settings.validate().is_ok());
    settings.redis.url =
        "redis://:secret@a:7000,http://b,redis://:other@c:7002,redis://:secret@d/3".into();
    let error = settings.validate().expect_err("bad seeds");
    assert_eq!(
        error.problems,
        [
            "redis.url: address 2 of 4 is not a redis:// or rediss:// URL with a host",
            "redis.url: address 3 of 4 has other credentials than the first: every node of a cluster takes the same",
            "redis.url: address 4 of 4 names a database: a Redis Cluster has database 0 only",
        ]
    );
    assert!(!error.to_string().contains("secret"), "{error}");
    settings.redis.url = " , ".into();
    let error = settings.validate().expect_err("no seed");
    assert!(error.problems[0].contains("at least one"), "{error}");
    // One server: as before, a password may hold a comma.
    settings.redis.cluster = false;
    settings.redis.url = "redis://:pa,ss@a:6379".into();
    assert!(settings.validate().is_ok());
}

#[test]
fn amqp_tls_files_go_with_an_amqps_url_and_are_not_read_by_the_check() {
    let mut settings = Settings::default();
    settings.amqp.ca_file = Some("/nonexistent/rabbit-ca.pem".into());
    let problems = |settings: &Settings| settings.validate().expect_err("refused").problems;
    assert_eq!(
        problems(&settings),
        [
            "amqp.ca_file, amqp.cert_file and amqp.key_file are for amqps:// (TLS) brokers, and amqp.url names none"
        ]
    );
    // The file is read when a service starts (crate::tls), not by the check.
    settings.amqp.url = "amqp://a:5672/%2f,amqps://b:5671/%2f".into();
    assert!(settings.validate().is_ok());
    settings.amqp.ca_file = None;
    settings.amqp.cert_file = Some("/etc/sprayer/amqp-client.pem".into());
    assert_eq!(
        problems(&settings),
        ["amqp.cert_file and amqp.key_file go together"]
    );
    settings.amqp.key_file = Some("/etc/sprayer/amqp-client.key".into());
    assert!(settings.validate().is_ok());
}

#[test]
fn a_redis_ca_file_goes_with_a_tls_url() {
    let mut settings = Settings::default();
    settings.redis.ca_file = Some("/etc/sprayer/redis-ca.pem".into());
    let error = settings.validate().expect_err("a CA for a plain URL");
    assert_eq!(
        error.problems,
        [
            "redis.ca_file, redis.cert_file and redis.key_file are for rediss:// (TLS) servers, and redis.url names none"
        ]
    );
    settings.redis.url = "rediss://:secret@redis.internal:6380".into();
    assert!(settings.validate().is_ok());
    settings.redis.key_file = Some("/etc/sprayer/redis-client.key".into());
    assert_eq!(
        settings.validate().expect_err("a key alone").problems,
        ["redis.cert_file and redis.key_file go together"]
    );
    settings.redis.cert_file = Some("/etc/sprayer/redis-client.pem".into());
    assert!(settings.validate().is_ok());
    settings.redis.cluster = true;
    settings.redis.url = "rediss://a:7000,rediss://b:7000".into();
    assert!(settings.validate().is_ok());
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut settings = Settings::default();
    settings.amqp.prefetch = 0;
    settings.redis.group_shards = 0;
    settings.feeder.batch_size = 0;
    settings.feeder.writes_in_flight = 0;
    let error = settings.validate().expect_err("four problems");
    assert_eq!(error.problems.len(), 4, "{error}");
    assert!(
        error
            .problems
            .iter()
            .any(|problem| problem.starts_with("feeder.writes_in_flight")),
        "{error}"
    );
}
