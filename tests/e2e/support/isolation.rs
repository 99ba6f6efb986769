//! Two apps of one installation never cross: each app's message to a user goes out with its own
//! provider settings to its own endpoint of that user, never with the other app's, even when
//! both apps have a user of the same id at the same address.

use std::fmt::Debug;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::app::TestApp;
use super::wait::wait_until;

/// The user id both apps register and send to.
pub const SAME_USER: &str = "same";

/// How long each app's message may take to reach its provider.
const ARRIVAL: Duration = Duration::from_secs(20);

/// How long a stray second message is given to show up once each provider has its first.
const QUIET: Duration = Duration::from_millis(300);

/// One of the two apps: its provider settings and the address of its endpoint for
/// [`SAME_USER`].
pub struct AppSide {
    /// Its provider settings for the channel; `None` for a channel that takes none (`http`).
    pub provider: Option<Value>,
    /// The address of its endpoint for [`SAME_USER`].
    pub address: Value,
}

/// What both apps do: register an endpoint on `channel` named `device` and send `content`.
pub struct TwoApps<'a> {
    /// The channel.
    pub channel: &'a str,
    /// The device name of both endpoints.
    pub device: &'a str,
    /// The content of both messages.
    pub content: Value,
    /// The test's app (`[0]`) and another app made on the same installation (`[1]`).
    pub sides: [AppSide; 2],
}

/// Makes another app beside `app`'s, gives each app its side's provider settings and endpoint
/// for [`SAME_USER`], and sends the same message as each. Then asserts that the provider of each
/// side gets exactly one message and that it is that side's own: `received(side)` lists what the
/// provider of `side` (0: the test's app, 1: the other) got so far, and `own(side, got)` says
/// whether it carries that side's credentials (its signing key, account, relay...). Returns the
/// ids of both messages, the test's app's first.
pub async fn assert_apps_do_not_cross<T, Received, Arrived>(
    app: &TestApp,
    two: TwoApps<'_>,
    received: Received,
    own: impl Fn(usize, &T) -> bool,
) -> [String; 2]
where
    T: Debug,
    Received: Fn(usize) -> Arrived,
    Arrived: Future<Output = Vec<T>>,
{
    let channel = two.channel;
    let (other_app, other_key) = app.create_app("other").await;
    let apps = [(&app.app, &app.key), (&other_app, &other_key)];
    for ((id, key), side) in apps.into_iter().zip(&two.sides) {
        if let Some(provider) = &side.provider {
            app.set_provider(id, channel, provider).await;
        }
        let status = app
            .put_endpoint_as(key, SAME_USER, channel, two.device, &side.address)
            .await;
        assert_eq!(status, 201, "{channel}: the endpoint of app {id}");
    }

    let body =
        json!({ "to": { "user": SAME_USER }, "channels": [channel], "content": two.content });
    let mut messages: [String; 2] = Default::default();
    for (message, (id, key)) in messages.iter_mut().zip(apps) {
        let response = app
            .request_as(key, Method::POST, "/v1/messages")
            .json(&body)
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 202, "{channel}: the message of app {id}");
        let accepted: Value = response.json().await.expect("JSON");
        *message = accepted["id"].as_str().expect("id").to_owned();
    }

    let arrived = wait_until(ARRIVAL, || async {
        for side in 0..2 {
            if received(side).await.is_empty() {
                return None;
            }
        }
        Some(())
    })
    .await;
    assert!(
        arrived.is_some(),
        "{channel}: each app's provider gets its app's message within {ARRIVAL:?}: {:?} and {:?}",
        received(0).await,
        received(1).await
    );
    // The other app's message, had it crossed, would come as a second one: give it time to.
    let _ = wait_until(QUIET, || async {
        for side in 0..2 {
            if received(side).await.len() > 1 {
                return Some(());
            }
        }
        None
    })
    .await;
    for side in 0..2 {
        let got = received(side).await;
        assert_eq!(
            got.len(),
            1,
            "{channel}: the provider of app {side} gets its own app's message and no other: {got:?}"
        );
        assert!(
            own(side, &got[0]),
            "{channel}: app {side}'s message went out with its own settings: {got:?}"
        );
    }
    messages
}
