//! Tenant isolation: one app can neither see nor change nor reach another app's data.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::app::TestApp;
use crate::support::isolation::{AppSide, TwoApps, assert_apps_do_not_cross};
use crate::support::receiver::{Receiver, signature_valid, webhook_secret};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_app_gets_404_for_everything_of_this_app_and_cannot_reach_its_group() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    app.put_webhook("u1", "d1", &receiver.url("u1"), &secret)
        .await;
    app.add_member("g1", "u1").await;
    let id = app
        .send_ok(&json!({ "to": { "group": "g1" }, "content": { "body": "mine" } }))
        .await;
    app.wait_for_status(&id, "http", "delivered", 1, Duration::from_secs(20))
        .await;

    let (_, other_key) = app.create_app("other").await;
    let status_as_other = |method: Method, path: String| {
        let request = app.request_as(&other_key, method, &path);
        async move { request.send().await.expect("answers").status().as_u16() }
    };
    assert_eq!(
        status_as_other(Method::GET, format!("/v1/messages/{id}")).await,
        404
    );
    assert_eq!(
        status_as_other(Method::GET, format!("/v1/messages/{id}/deliveries")).await,
        404
    );
    assert_eq!(
        status_as_other(Method::GET, "/v1/users/u1/endpoints".into()).await,
        404
    );
    assert_eq!(
        status_as_other(Method::DELETE, "/v1/users/u1/endpoints/http/d1".into()).await,
        404
    );
    assert_eq!(
        status_as_other(Method::GET, "/v1/groups/g1/members".into()).await,
        404
    );
    assert_eq!(
        status_as_other(Method::DELETE, "/v1/groups/g1/members/u1".into()).await,
        404
    );

    // The other app's message to a group of the same name reaches nobody of this app.
    let response = app
        .request_as(&other_key, Method::POST, "/v1/messages")
        .json(&json!({ "to": { "group": "g1" }, "content": { "body": "theirs" } }))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 202);
    let theirs: serde_json::Value = response.json().await.expect("json");
    let theirs = theirs["id"].as_str().expect("id").to_owned();
    let summary = crate::support::wait::wait_until(Duration::from_secs(10), || async {
        let response = app
            .request_as(&other_key, Method::GET, &format!("/v1/messages/{theirs}"))
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(())?;
        response.json::<serde_json::Value>().await.ok()
    })
    .await
    .expect("their message is recorded");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(summary["total"], 0);
    assert_eq!(
        receiver.hits_for("u1").len(),
        1,
        "only this app's own message arrived"
    );

    // Everything of this app is still there.
    let (status, endpoints) = app.get("/v1/users/u1/endpoints").await;
    assert_eq!(status, 200);
    assert_eq!(endpoints["items"].as_array().expect("items").len(), 1);
    let (status, members) = app.get("/v1/groups/g1/members").await;
    assert_eq!(status, 200);
    assert_eq!(members["items"], json!(["u1"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_apps_with_a_user_of_the_same_id_each_reach_only_their_own_webhook() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let paths = ["first", "second"];
    let secrets = [webhook_secret(), webhook_secret()];
    let two = TwoApps {
        channel: "http",
        device: "d1",
        content: json!({ "body": "hi" }),
        sides: [0, 1].map(|side| AppSide {
            provider: None,
            address: json!({ "url": receiver.url(paths[side]), "secret": secrets[side] }),
        }),
    };
    let messages = assert_apps_do_not_cross(
        &app,
        two,
        |side| std::future::ready(receiver.hits_for(paths[side])),
        |side, hit| signature_valid(&secrets[side], hit),
    )
    .await;
    for (path, id) in paths.iter().zip(&messages) {
        assert_eq!(&receiver.hits_for(path)[0].message_id(), id, "{path}");
    }
}
