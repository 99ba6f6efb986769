//! The `fcm` channel against an HTTP v1 stand-in with a real OAuth2 service-account grant.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use sprayer_shared::model::Channel;

use crate::support::app::TestApp;
use crate::support::isolation::{AppSide, TwoApps, assert_apps_do_not_cross};
use crate::support::local::TempDir;
use crate::support::peers::fcm::FcmPeer;
use crate::support::wait::wait_until;

/// A service account's RSA key pair: (PKCS#8 private PEM, public PEM).
fn rsa_key_pair() -> (String, String) {
    let dir = TempDir::new("sprayer-fcm");
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success());
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "sa.pem",
    ]);
    run(&["pkey", "-in", "sa.pem", "-pubout", "-out", "sa.pub.pem"]);
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).expect("key");
    (read("sa.pem"), read("sa.pub.pem"))
}

async fn fcm_app() -> TestApp {
    TestApp::spawn_with(|settings| settings.accepter.channels = vec![Channel::Http, Channel::Fcm])
        .await
}

fn provider(peer: &FcmPeer, email: &str, private_key: &str, project: &str) -> Value {
    json!({ "service_account": peer.service_account(email, private_key, project), "base_url": peer.base })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_reaches_fcm_with_oauth_tokens_and_dead_tokens_are_pruned() {
    let (private_key, public_key) = rsa_key_pair();
    let email = "sender@shop-project.iam.gserviceaccount.com";
    let peer = FcmPeer::start(email, &public_key).await;
    let app = fcm_app().await;
    app.set_provider(
        &app.app,
        "fcm",
        &provider(&peer, email, &private_key, "shop-project"),
    )
    .await;

    let mut devices: Vec<(String, String)> = (0..25)
        .map(|index| (format!("android{index}"), format!("tok-{index}:APA91b")))
        .collect();
    for user in ["gone", "invalid", "busy", "down"] {
        devices.push((user.to_owned(), format!("{user}-token")));
    }
    for (user, token) in &devices {
        assert_eq!(
            app.put_endpoint_as(&app.key, user, "fcm", "pixel", &json!({ "token": token }))
                .await,
            201
        );
        app.add_member("droids", user).await;
    }
    let id = app
        .send_ok(&json!({
            "to": { "group": "droids" }, "channels": ["fcm"], "priority": "high", "ttl": 300,
            "content": { "title": "Flash sale", "body": "Today only", "data": { "sku": 7, "kind": "sale" } },
            "overrides": { "fcm": { "collapse_key": "sale", "fcm_options": { "analytics_label": "sale" } } },
        }))
        .await;
    let summary = app
        .wait_for_status(&id, "fcm", "sent", 27, Duration::from_secs(30))
        .await;
    assert_eq!(summary["summary"]["fcm"]["unregistered"], 2, "{summary}");

    let sends = peer.sends();
    let mut per_token: HashMap<String, Vec<&Value>> = HashMap::new();
    for send in &sends {
        assert_eq!(send["project"], "shop-project");
        per_token
            .entry(
                send["body"]["message"]["token"]
                    .as_str()
                    .expect("token")
                    .to_owned(),
            )
            .or_default()
            .push(send);
    }
    for (_, token) in devices.iter().take(25) {
        let seen = &per_token[token];
        assert_eq!(seen.len(), 1, "{token}");
        let message = &seen[0]["body"]["message"];
        assert_eq!(
            message["notification"],
            json!({ "title": "Flash sale", "body": "Today only" })
        );
        assert_eq!(
            message["data"],
            json!({ "sku": "7", "kind": "sale" }),
            "data values travel as strings"
        );
        assert_eq!(message["android"]["priority"], "HIGH");
        assert_eq!(message["android"]["collapse_key"], "sale");
        let ttl: u64 = message["android"]["ttl"]
            .as_str()
            .expect("ttl")
            .trim_end_matches('s')
            .parse()
            .expect("seconds");
        assert!((250..=300).contains(&ttl), "ttl {ttl}");
        assert_eq!(message["fcm_options"], json!({ "analytics_label": "sale" }));
    }
    assert_eq!(per_token["busy-token"].len(), 2, "429 retried");
    assert_eq!(per_token["down-token"].len(), 2, "503 retried");
    assert!(
        peer.grants() <= 2,
        "the access token is reused: {} grants",
        peer.grants()
    );

    for user in ["gone", "invalid"] {
        let pruned = wait_until(Duration::from_secs(5), || async {
            (app.get(&format!("/v1/users/{user}/endpoints")).await.0 == 404).then_some(())
        })
        .await;
        assert!(pruned.is_some(), "{user}'s token was removed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apps_with_their_own_service_accounts_never_cross() {
    let (first_private, first_public) = rsa_key_pair();
    let (second_private, second_public) = rsa_key_pair();
    let first = FcmPeer::start("a@first.iam.gserviceaccount.com", &first_public).await;
    let second = FcmPeer::start("b@second.iam.gserviceaccount.com", &second_public).await;
    let app = fcm_app().await;
    let device = json!({ "token": "shared-token" });
    let two = TwoApps {
        channel: "fcm",
        device: "pixel",
        content: json!({ "body": "hi" }),
        sides: [
            AppSide {
                provider: Some(provider(
                    &first,
                    "a@first.iam.gserviceaccount.com",
                    &first_private,
                    "first",
                )),
                address: device.clone(),
            },
            AppSide {
                provider: Some(provider(
                    &second,
                    "b@second.iam.gserviceaccount.com",
                    &second_private,
                    "second",
                )),
                address: device,
            },
        ],
    };
    let peers = [(&first, "first"), (&second, "second")];
    assert_apps_do_not_cross(
        &app,
        two,
        |side| std::future::ready(peers[side].0.sends()),
        |side, send| send["project"] == peers[side].1,
    )
    .await;
}
