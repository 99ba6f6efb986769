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
