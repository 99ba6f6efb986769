//! The `webpush` channel against a push service that checks VAPID and decrypts like a browser.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sprayer_shared::model::Channel;
use web_push_native::jwt_simple::algorithms::{ECDSAP256PublicKeyLike, ES256KeyPair};

use crate::support::app::TestApp;
use crate::support::isolation::{AppSide, TwoApps, assert_apps_do_not_cross};
use crate::support::peers::webpush::WebpushPeer;
use crate::support::wait::wait_until;

/// A VAPID key pair: (private key for the provider settings, public key browsers get).
fn vapid_keys() -> (String, String) {
    let key = ES256KeyPair::generate();
    let private = URL_SAFE_NO_PAD.encode(key.to_bytes());
    let public = URL_SAFE_NO_PAD.encode(key.public_key().public_key().to_bytes_uncompressed());
    (private, public)
}

async fn webpush_app() -> TestApp {
    TestApp::spawn_with(|settings| {
        settings.accepter.channels = vec![Channel::Http, Channel::Webpush]
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_gets_encrypted_pushes_and_expired_subscriptions_are_pruned() {
    let peer = WebpushPeer::start();
    let app = webpush_app().await;
    let (private_key, public_key) = vapid_keys();
    app.set_provider(
        &app.app,
        "webpush",
        &json!({ "private_key": private_key, "subject": "mailto:ops@shop.example" }),
    )
    .await;
    let mut names: Vec<String> = (0..15).map(|index| format!("browser{index}")).collect();
    names.extend(["gone1", "missing1", "busy1"].map(str::to_owned));
    for name in &names {
        let subscription = peer.subscribe(name).await;
        assert_eq!(
            app.put_endpoint_as(&app.key, name, "webpush", "chrome", &subscription)
                .await,
            201
        );
        app.add_member("subscribers", name).await;
    }
    let id = app
        .send_ok(&json!({
            "to": { "group": "subscribers" }, "channels": ["webpush"], "priority": "high", "ttl": 120,
            "content": { "title": "New reply", "body": "Someone answered", "data": { "thread": 9 } },
            "overrides": { "webpush": { "topic": "thread-9", "icon": "/icon.png" } },
        }))
        .await;
    let summary = app
        .wait_for_status(&id, "webpush", "sent", 16, Duration::from_secs(30))
        .await;
    assert_eq!(
        summary["summary"]["webpush"]["unregistered"], 2,
        "{summary}"
    );

    let received = peer.received().await;
    let by_name: HashMap<&str, &Value> = received
        .iter()
        .map(|push| (push["name"].as_str().expect("name"), push))
        .collect();
    assert_eq!(
        received.len(),
        16,
        "one decrypted push per live subscription"
    );
    for name in names
        .iter()
        .filter(|name| name.starts_with("browser") || name.starts_with("busy"))
    {
        let push = by_name[name.as_str()];
        assert_eq!(
            push["payload"],
            json!({ "message_id": id, "title": "New reply", "body": "Someone answered", "data": { "thread": 9 }, "icon": "/icon.png" })
        );
        assert_eq!(push["urgency"], "high");
        assert_eq!(push["topic"], "thread-9");
        let ttl: u64 = push["ttl"].as_str().expect("ttl").parse().expect("seconds");
        assert!((100..=120).contains(&ttl), "ttl {ttl}");
        assert_eq!(
            push["vapid"]["k"],
            public_key.as_str(),
            "signed with the app's VAPID key"
        );
        assert_eq!(push["vapid"]["sub"], "mailto:ops@shop.example");
    }
    assert_eq!(by_name["busy1"]["attempt"], 2, "the 429 was retried");
    for user in ["gone1", "missing1"] {
        let pruned = wait_until(Duration::from_secs(5), || async {
            (app.get(&format!("/v1/users/{user}/endpoints")).await.0 == 404).then_some(())
        })
        .await;
        assert!(pruned.is_some(), "{user}'s subscription was removed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apps_sign_with_their_own_vapid_keys_and_bad_subscriptions_are_refused() {
    let peer = WebpushPeer::start();
    let app = webpush_app().await;
    let (first_private, first_public) = vapid_keys();
    let (second_private, second_public) = vapid_keys();
    // One push service, a browser subscribed for each app.
    let browsers = ["first-browser", "second-browser"];
    let two = TwoApps {
        channel: "webpush",
        device: "firefox",
        content: json!({ "body": "hi" }),
        sides: [
            AppSide {
                provider: Some(
                    json!({ "private_key": first_private, "subject": "mailto:a@first.example" }),
                ),
                address: peer.subscribe(browsers[0]).await,
            },
            AppSide {
                provider: Some(
                    json!({ "private_key": second_private, "subject": "https://second.example" }),
                ),
                address: peer.subscribe(browsers[1]).await,
            },
        ],
    };
    let public_keys = [&first_public, &second_public];
    assert_apps_do_not_cross(
        &app,
        two,
        |side| {
            let (peer, browser) = (&peer, browsers[side]);
            async move {
                let pushes = peer.received().await;
                pushes
                    .into_iter()
                    .filter(|push| push["name"] == browser)
                    .collect()
            }
        },
        |side, push| push["vapid"]["k"] == public_keys[side].as_str(),
    )
    .await;

    let bad = json!({ "endpoint": "https://push.example/x", "keys": { "p256dh": "AAAA", "auth": "AAAA" } });
    assert_eq!(
        app.put_endpoint_as(&app.key, "u", "webpush", "chrome", &bad)
            .await,
        422
    );
    let response = app
        .http
        .put(format!(
            "{}/admin/v1/apps/{}/providers/webpush",
            app.admin, app.app
        ))
        .bearer_auth(app.admin_token())
        .json(&json!({ "private_key": "short", "subject": "mailto:a@b.c" }))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 422);
}
