//! Secrets stay secret: app keys, the admin token, webhook secrets, provider credentials,
//! WebSocket tokens and the token secret never appear in the logs of a run (at `debug`, every
//! crate) nor in an error body.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sprayer_shared::model::Channel;

use crate::support::owned::process::SprayerProcess;
use crate::support::receiver::{Receiver, webhook_secret};
use crate::support::stack::{test_settings, unique};
use crate::support::wait::wait_until;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs_or_an_error_body() {
    let mut settings = test_settings();
    settings.accepter.channels = vec![Channel::Http, Channel::Email, Channel::Ws];
    let admin_token = settings.admin.token.clone().expect("admin token");
    let admin_token = admin_token.expose_secret().to_owned();
    let token_secret = settings
        .deliverer
        .token_secret
        .clone()
        .expect("token secret");
    let sprayer = SprayerProcess::start_with_logs(
        &settings,
        "accepter,dispatchers,feeder,deliverer",
        "debug",
    )
    .await;
    let api = sprayer.api.clone().expect("the API runs");
    let admin = sprayer.admin.clone().expect("the admin API runs");
    let http = reqwest::Client::new();
    let mut bodies = Vec::new();

    let created: Value = http
        .post(format!("{admin}/admin/v1/apps"))
        .bearer_auth(&admin_token)
        .json(&json!({ "name": "secretive" }))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    let key = created["key"].as_str().expect("key").to_owned();
    let app = created["id"].as_str().expect("id").to_owned();

    // Refused credentials are not echoed.
    let wrong_key = format!("spr_0123456789abcdef_{}", unique("wrong"));
    let wrong_admin = unique("wrong-admin-");
    for (url, token) in [
        (format!("{api}/v1/users/u1/endpoints"), &wrong_key),
        (format!("{admin}/admin/v1/apps"), &wrong_admin),
    ] {
        let response = http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        bodies.push(response.text().await.expect("body"));
    }

    // A webhook with a good secret, and one refused for a short one.
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    let short_secret = format!("whsec_{}", STANDARD.encode(unique("s").as_bytes()));
    for (device, secret) in [("d1", &secret), ("d2", &short_secret)] {
        let response = http
            .put(format!("{api}/v1/users/u1/endpoints/http/{device}"))
            .bearer_auth(&key)
            .json(&json!({ "url": receiver.url("u1"), "secret": secret }))
            .send()
            .await
            .expect("answers");
        bodies.push(response.text().await.expect("body"));
    }

    // Provider credentials: an SMTP relay with a password (nothing listens there, so the
    // dispatcher fails and retries, logging why).
    let password = unique("smtp-password-");
    let relay = json!({ "host": "127.0.0.1", "port": 9, "tls": "none",
        "username": "mailer", "password": password, "from": "Shop <shop@example.com>" });
    let response = http
        .put(format!("{admin}/admin/v1/apps/{app}/providers/email"))
        .bearer_auth(&admin_token)
        .json(&relay)
        .send()
        .await
        .expect("answers");
    assert!(response.status().is_success(), "{:?}", response.status());
    bodies.push(response.text().await.expect("body"));
    let listed = http
        .get(format!("{admin}/admin/v1/apps/{app}/providers"))
        .bearer_auth(&admin_token)
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("body");
    bodies.push(listed);
    let response = http
        .put(format!("{api}/v1/users/u1/endpoints/email/inbox"))
        .bearer_auth(&key)
        .json(&json!({ "address": "u1@example.com" }))
        .send()
        .await
        .expect("answers");
    assert!(response.status().is_success());

    // A WebSocket token.
    let minted: Value = http
        .post(format!("{api}/v1/users/u1/ws-token"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    let ws_token = minted["token"].as_str().expect("token").to_owned();

    // A message over every channel, and its feedback.
    let sent: Value = http
        .post(format!("{api}/v1/messages"))
        .bearer_auth(&key)
        .json(&json!({ "to": { "user": "u1" }, "content": { "title": "t", "body": "b" } }))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    let id = sent["id"].as_str().expect("id").to_owned();
    wait_until(Duration::from_secs(30), || async {
        (!receiver.hits().is_empty()).then_some(())
    })
    .await
    .expect("the webhook arrived");
    // The email dispatcher tries the relay, fails, and says why in the delivery's feedback.
    let failed_page = wait_until(Duration::from_secs(30), || async {
        let page: Value = http
            .get(format!("{api}/v1/messages/{id}/deliveries?channel=email"))
            .bearer_auth(&key)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let error = page["items"][0]["error"].as_str()?;
        (!error.is_empty()).then(|| page.to_string())
    })
    .await
    .expect("the failed email attempt was recorded");
    bodies.push(failed_page);

    let logs = sprayer.output.lock().expect("lock").clone();
    assert!(
        logs.lines().count() > 50,
        "the run logged at debug ({} lines)",
        logs.lines().count()
    );
    // `spr_<key id>_<secret>`; the secret is base64url and may hold `_` itself.
    let key_secret = key.splitn(3, '_').nth(2).expect("secret part").to_owned();
    let secret_body = secret.trim_start_matches("whsec_").to_owned();
    let secrets = [
        ("the app key", key.as_str()),
        ("the app key's secret part", key_secret.as_str()),
        ("a refused app key", wrong_key.as_str()),
        ("the admin token", admin_token.as_str()),
        ("a refused admin token", wrong_admin.as_str()),
        ("the webhook secret", secret_body.as_str()),
        ("a refused webhook secret", short_secret.as_str()),
        ("the SMTP password", password.as_str()),
        ("the WebSocket token", ws_token.as_str()),
        ("the token secret", token_secret.expose_secret()),
    ];
    for (what, value) in secrets {
        assert!(!logs.contains(value), "{what} is in the logs");
        for body in &bodies {
            assert!(!body.contains(value), "{what} is in an answer: {body}");
        }
    }
    eprintln!(
        "secrets: {} log lines at debug and {} answers searched for {} secrets; none found",
        logs.lines().count(),
        bodies.len(),
        secrets.len()
    );
}
