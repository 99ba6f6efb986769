//! Apps and keys through the admin API, and the paged lists of endpoints and members.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::TestApp;
use crate::support::receiver::webhook_secret;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_without_downtime_and_revoked_keys_stop_working() {
    let app = TestApp::spawn_accepter_only().await;
    let admin = |method: Method, path: String| {
        app.http
            .request(method, format!("{}{path}", app.admin))
            .bearer_auth(app.admin_token())
    };
    let works = |key: String| {
        let request = app.request_as(&key, Method::GET, "/v1/groups/g/members");
        async move { request.send().await.expect("answers").status() != 401 }
    };

    // The admin API has a listener of its own: the app API's listener does not know it.
    let response = app
        .http
        .post(format!("{}/admin/v1/apps", app.base))
        .bearer_auth(app.admin_token())
        .json(&json!({ "name": "x" }))
        .send()
        .await
        .expect("answers");
    assert_eq!(
        response.status(),
        404,
        "no admin API on the app API's listener"
    );
    assert_ne!(app.admin, app.base);
    let response = app
        .http
        .post(format!("{}/admin/v1/apps", app.admin))
        .bearer_auth("wrong")
        .json(&json!({ "name": "x" }))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 401, "a wrong admin token is refused");
    let response = admin(Method::POST, "/admin/v1/apps".into())
        .json(&json!({ "name": "" }))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 422);

    let response = admin(Method::POST, format!("/admin/v1/apps/{}/keys", app.app))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 201);
    let second: Value = response.json().await.expect("json");
    let second_key = second["key"].as_str().expect("key").to_owned();
    assert!(works(app.key.clone()).await, "the first key still works");
    assert!(works(second_key.clone()).await, "the second key works");

    let response = admin(Method::POST, format!("/admin/v1/apps/{}/keys", app.app))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 409, "at most two live keys");

    let first_id = app.key.split('_').nth(1).expect("key id").to_owned();
    let response = admin(
        Method::DELETE,
        format!("/admin/v1/apps/{}/keys/{first_id}", app.app),
    )
    .send()
    .await
    .expect("answers");
    assert_eq!(response.status(), 204);
    assert!(!works(app.key.clone()).await, "the revoked key is refused");
    assert!(works(second_key.clone()).await);

    let second_id = second["key_id"].as_str().expect("key id");
    let response = admin(
        Method::DELETE,
        format!("/admin/v1/apps/{}/keys/{second_id}", app.app),
    )
    .send()
    .await
    .expect("answers");
    assert_eq!(response.status(), 409, "the last key stays");

    let response = admin(Method::GET, "/admin/v1/apps".into())
        .send()
        .await
        .expect("answers");
    let apps: Value = response.json().await.expect("json");
    let listed = apps
        .as_array()
        .expect("list")
        .iter()
        .find(|listed| listed["id"] == app.app.as_str())
        .expect("listed");
    assert_eq!(listed["key_ids"], json!([second_id]));
    assert!(
        !apps.to_string().contains("hash"),
        "no key material is listed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_and_endpoints_are_listed_page_by_page() {
    let app = TestApp::spawn_accepter_only().await;
    let secret = webhook_secret();
    let users: Vec<String> = (0..250).map(|index| format!("member{index}")).collect();
    futures::future::join_all(users.iter().map(|user| app.add_member("big", user))).await;
    // Adding twice changes nothing.
    let again = app
        .request(Method::PUT, "/v1/groups/big/members/member0")
        .send()
        .await
        .expect("answers");
    assert_eq!(again.status(), 200);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/groups/big/members?limit=50&cursor={cursor}"),
            None => "/v1/groups/big/members?limit=50".into(),
        };
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        seen.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|item| item.as_str().expect("user").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert!(pages >= 5, "{pages} pages");
    assert_eq!(seen.len(), 250, "every member once");
    assert_eq!(
        seen.iter().collect::<HashSet<_>>(),
        users.iter().collect::<HashSet<_>>()
    );

    let response = app
        .request(Method::DELETE, "/v1/groups/big/members/member0")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 204);
    let response = app
        .request(Method::DELETE, "/v1/groups/big/members/member0")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 404);

    for device in ["a", "b", "c", "d", "e"] {
        app.put_webhook(
            "multi",
            device,
            &format!("https://example.com/{device}"),
            &secret,
        )
        .await;
    }
    let (status, first) = app.get("/v1/users/multi/endpoints?limit=2").await;
    assert_eq!(status, 200);
    assert_eq!(first["items"][0]["device"], "a");
    assert!(
        !first.to_string().contains(&secret),
        "secrets are never listed"
    );
    let next = first["next_cursor"].as_str().expect("more");
    let (_, second) = app
        .get(&format!("/v1/users/multi/endpoints?limit=2&cursor={next}"))
        .await;
    assert_eq!(second["items"][0]["device"], "c");
    let next = second["next_cursor"].as_str().expect("more");
    let (_, third) = app
        .get(&format!("/v1/users/multi/endpoints?limit=2&cursor={next}"))
        .await;
    assert_eq!(third["items"].as_array().expect("items").len(), 1);
    assert!(third["next_cursor"].is_null());
}
