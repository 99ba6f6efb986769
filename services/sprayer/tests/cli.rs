//! The administration CLI against the real MongoDB: create an app, rotate its key, list it.

use std::process::Command;

use serde_json::Value;

fn sprayer(database: &str, args: &[&str]) -> (bool, Value, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sprayer"));
    command
        .args(args)
        .env("SPRAYER_MONGODB_DATABASE", database)
        .env_remove("SPRAYER_CONFIG");
    if let Ok(url) = std::env::var("SPRAYER_MONGODB_URL") {
        command.env("SPRAYER_MONGODB_URL", url);
    }
    let output = command.output().expect("the sprayer binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    (
        output.status.success(),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stderr,
    )
}

#[test]
fn apps_are_created_listed_and_their_keys_rotated_from_the_cli() {
    let database = format!("sprayer_cli_{:x}", std::process::id());
    let (ok, created, stderr) = sprayer(&database, &["admin", "create-app", "--name", "shop"]);
    assert!(
        ok,
        "create-app failed (is MongoDB running? `make test` starts it): {stderr}"
    );
    let app = created["id"].as_str().expect("id").to_owned();
    let first_key = created["key"].as_str().expect("key").to_owned();
    assert!(first_key.starts_with("spr_"), "{created}");

    let (ok, added, stderr) = sprayer(&database, &["admin", "add-key", "--app", &app]);
    assert!(ok, "{stderr}");
    let second_id = added["key_id"].as_str().expect("key id").to_owned();
    let (ok, _, _) = sprayer(&database, &["admin", "add-key", "--app", &app]);
    assert!(!ok, "a third live key is refused");

    let first_id = first_key.split('_').nth(1).expect("key id");
    let (ok, _, stderr) = sprayer(
        &database,
        &["admin", "revoke-key", "--app", &app, "--key-id", first_id],
    );
    assert!(ok, "{stderr}");
    let (ok, listed, stderr) = sprayer(&database, &["admin", "list-apps"]);
    assert!(ok, "{stderr}");
    let entry = listed
        .as_array()
        .expect("list")
        .iter()
        .find(|entry| entry["id"] == app.as_str())
        .expect("listed");
    assert_eq!(entry["name"], "shop");
    assert_eq!(entry["key_ids"], serde_json::json!([second_id]));

    let (ok, _, stderr) = sprayer(&database, &["admin", "create-app", "--name", "  "]);
    assert!(!ok && stderr.contains("app name"), "{stderr}");
}

#[test]
fn a_bad_configuration_lists_every_problem_and_exits_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_sprayer"))
        .args(["admin", "list-apps"])
        .env("SPRAYER_AMQP_PREFETCH", "lots")
        .env("SPRAYER_REDIS_GROUP_SHARDS", "-3")
        .env_remove("SPRAYER_CONFIG")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("amqp.prefetch") && stderr.contains("redis.group_shards"),
        "{stderr}"
    );
}

#[test]
fn a_settings_file_named_by_sprayer_config_is_read() {
    let dir = std::env::temp_dir().join(format!("sprayer-cli-{:x}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("folder");
    let file = dir.join("settings.toml");
    std::fs::write(&file, "[amqp]\nprefetch = 0\n").expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_sprayer"))
        .args(["admin", "list-apps"])
        .env("SPRAYER_CONFIG", &file)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("amqp.prefetch must be at least 1"),
        "the file was read: {stderr}"
    );
    assert!(!stderr.contains("config is not a section"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A service that fails while running stops the whole process, which exits non-zero with a
/// line naming the service (here the `http` dispatcher, whose ops port is taken), so that an
/// orchestrator restarts it; it does not go on without it.
#[test]
fn a_service_that_fails_stops_the_process_with_a_non_zero_exit_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("its address").port();
    let namespace = format!("cli_fail_{:x}", std::process::id());
    let mut command = Command::new(env!("CARGO_BIN_EXE_sprayer"));
    command
        .args(["run", "--only", "dispatchers"])
        .env_remove("SPRAYER_CONFIG")
        .env("SPRAYER_DISPATCHER_OPS_LISTEN", format!("127.0.0.1:{port}"))
        .env("SPRAYER_AMQP_PREFIX", format!("{namespace}."))
        .env("SPRAYER_AMQP_QUEUE_EXPIRES", "60s")
        .env("SPRAYER_MONGODB_DATABASE", &namespace)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Ok(url) = std::env::var("SPRAYER_MONGODB_URL") {
        command.env("SPRAYER_MONGODB_URL", url);
    }
    let mut child = command.spawn().expect("the sprayer binary runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().ok();
            panic!("sprayer run went on for 60 s with a failed dispatcher");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    drop(taken);
    assert!(!status.success(), "exit {status}: {stderr}");
    assert!(
        stderr.contains("dispatcher http failed"),
        "the failed service is not named: {stderr}"
    );
}
