//! The `email` channel against a real SMTP server: mails arrive with the expected content,
//! refused addresses are pruned, passing refusals are retried, and apps keep to their relays.

use std::collections::HashMap;
use std::time::Duration;

use mailparse::MailHeaderMap;
use reqwest::Method;
use serde_json::json;

use crate::support::app::TestApp;
use crate::support::isolation::{AppSide, TwoApps, assert_apps_do_not_cross};
use crate::support::peers::smtp::SmtpPeer;
use crate::support::wait::wait_until;

fn relay(peer: &SmtpPeer, from: &str) -> serde_json::Value {
    json!({ "host": "127.0.0.1", "port": peer.peer.port, "tls": "none", "from": from })
}

fn email_app() -> impl FnOnce(&mut sprayer_shared::Settings) {
    |settings| {
        settings.accepter.channels = vec![
            sprayer_shared::model::Channel::Http,
            sprayer_shared::model::Channel::Email,
        ]
    }
}

/// Parsed mails by recipient address.
fn mails_by_recipient(peer: &SmtpPeer) -> HashMap<String, Vec<Vec<u8>>> {
    let mut by_recipient: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for raw in peer.mails() {
        let parsed = mailparse::parse_mail(&raw).expect("a mail");
        let to = parsed.headers.get_first_value("To").expect("To");
        by_recipient.entry(to).or_default().push(raw);
    }
    by_recipient
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_gets_multipart_mail_refused_addresses_are_pruned_and_busy_ones_retried() {
    let app = TestApp::spawn_with(email_app()).await;
    let peer = SmtpPeer::start();
    app.set_provider(
        &app.app,
        "email",
        &relay(&peer, "Shop <no-reply@shop.example>"),
    )
    .await;
    let mut users = Vec::new();
    for index in 0..20 {
        let user = format!("reader{index}");
        let status = app
            .put_endpoint_as(
                &app.key,
                &user,
                "email",
                "inbox",
                &json!({ "address": format!("reader{index}@example.com") }),
            )
            .await;
        assert_eq!(status, 201);
        users.push(user);
    }
    for (user, address) in [
        ("refuser", "reject@example.com"),
        ("slow", "busy@example.com"),
    ] {
        let status = app
            .put_endpoint_as(
                &app.key,
                user,
                "email",
                "inbox",
                &json!({ "address": address }),
            )
            .await;
        assert_eq!(status, 201);
        users.push(user.to_owned());
    }
    futures::future::join_all(users.iter().map(|user| app.add_member("readers", user))).await;

    let id = app
        .send_ok(&json!({
            "to": { "group": "readers" },
            "channels": ["email"],
            "content": { "title": "Spring sale", "body": "Everything <half> price", "data": { "sku": 7 } },
            "overrides": { "email": { "html": "<h1>Spring sale</h1><p>Everything half price</p>" } },
        }))
        .await;
    let summary = app
        .wait_for_status(&id, "email", "sent", 21, Duration::from_secs(30))
        .await;
    assert_eq!(summary["summary"]["email"]["unregistered"], 1, "{summary}");
    assert_eq!(summary["total"], 22);

    let mails = mails_by_recipient(&peer);
    assert_eq!(
        mails.values().map(Vec::len).sum::<usize>(),
        21,
        "one mail per accepted recipient"
    );
    for index in 0..20 {
        let address = format!("reader{index}@example.com");
        let raw = &mails
            .get(&address)
            .unwrap_or_else(|| panic!("no mail for {address}"))[0];
        let mail = mailparse::parse_mail(raw).expect("mail");
        assert_eq!(
            mail.headers.get_first_value("Subject").as_deref(),
            Some("Spring sale")
        );
        assert_eq!(
            mail.headers.get_first_value("From").as_deref(),
            Some("Shop <no-reply@shop.example>")
        );
        let delivery = format!("{id}:email:reader{index}:inbox");
        assert_eq!(
            mail.headers.get_first_value("X-Sprayer-Delivery"),
            Some(delivery)
        );
        let message_id = mail
            .headers
            .get_first_value("Message-ID")
            .expect("Message-ID");
        assert!(message_id.ends_with("@shop.example>"), "{message_id}");
        assert_eq!(mail.ctype.mimetype, "multipart/alternative");
        let parts: Vec<(String, String)> = mail
            .subparts
            .iter()
            .map(|part| {
                (
                    part.ctype.mimetype.clone(),
                    part.get_body().expect("body").trim().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            parts[0],
            (
                "text/plain".to_owned(),
                "Everything <half> price".to_owned()
            )
        );
        assert_eq!(
            parts[1],
            (
                "text/html".to_owned(),
                "<h1>Spring sale</h1><p>Everything half price</p>".to_owned()
            )
        );
    }
    assert_eq!(
        mails.get("busy@example.com").map(Vec::len),
        Some(1),
        "the 451 was retried once"
    );

    let deliveries = app.all_deliveries(&id, 50).await;
    let slow = deliveries
        .iter()
        .find(|d| d["user"] == "slow")
        .expect("slow");
    assert_eq!(
        (slow["status"].as_str(), slow["attempts"].as_i64()),
        (Some("sent"), Some(2)),
        "{slow}"
    );
    let refuser = deliveries
        .iter()
        .find(|d| d["user"] == "refuser")
        .expect("refuser");
    assert_eq!(refuser["status"], "unregistered");
    assert_eq!(refuser["attempts"], 1);

    // The refused address is gone from the user's endpoints and from the group's e-mail set.
    let pruned = wait_until(Duration::from_secs(5), || async {
        (app.get("/v1/users/refuser/endpoints").await.0 == 404).then_some(())
    })
    .await;
    assert!(pruned.is_some(), "the refused address was removed");
    let again = app.send_ok(&json!({ "to": { "group": "readers" }, "channels": ["email"], "content": { "body": "again" } })).await;
    let summary = app
        .wait_for_status(&again, "email", "sent", 21, Duration::from_secs(30))
        .await;
    assert_eq!(
        summary["total"], 21,
        "the pruned member is no longer on the group's e-mail list: {summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_apps_send_through_their_own_relays_and_without_one_deliveries_fail() {
    let app = TestApp::spawn_with(email_app()).await;
    let (mine, theirs) = (SmtpPeer::start(), SmtpPeer::start());
    let relays = [
        (&mine, "Mine <a@mine.example>"),
        (&theirs, "Theirs <b@theirs.example>"),
    ];
    let address = json!({ "address": "same@example.com" });
    let two = TwoApps {
        channel: "email",
        device: "inbox",
        content: json!({ "title": "hi", "body": "x" }),
        sides: relays.map(|(peer, from)| AppSide {
            provider: Some(relay(peer, from)),
            address: address.clone(),
        }),
    };
    // What each relay got, by its From header.
    let senders = |side: usize| {
        let froms: Vec<Option<String>> = relays[side]
            .0
            .mails()
            .iter()
            .map(|mail| {
                let mail = mailparse::parse_mail(mail).expect("mail");
                mail.headers.get_first_value("From")
            })
            .collect();
        std::future::ready(froms)
    };
    let [first, _] = assert_apps_do_not_cross(&app, two, senders, |side, from| {
        from.as_deref() == Some(relays[side].1)
    })
    .await;
    app.wait_for_status(&first, "email", "sent", 1, Duration::from_secs(20))
        .await;

    // An app without a relay: the delivery fails, saying why.
    let (_, bare_key) = app.create_app("bare").await;
    let status = app
        .put_endpoint_as(
            &bare_key,
            "u",
            "email",
            "inbox",
            &json!({ "address": "u@example.com" }),
        )
        .await;
    assert_eq!(status, 201);
    let response = app
        .request_as(&bare_key, Method::POST, "/v1/messages")
        .json(&json!({ "to": { "user": "u" }, "channels": ["email"], "content": { "body": "x" } }))
        .send()
        .await
        .expect("answers");
    let accepted: serde_json::Value = response.json().await.expect("json");
    let id = accepted["id"].as_str().expect("id").to_owned();
    let failed = wait_until(Duration::from_secs(20), || async {
        let response = app
            .request_as(
                &bare_key,
                Method::GET,
                &format!("/v1/messages/{id}/deliveries"),
            )
            .send()
            .await
            .ok()?;
        let page: serde_json::Value = response.json().await.ok()?;
        let first = page["items"].get(0)?.clone();
        (first["status"] == "failed").then_some(first)
    })
    .await
    .expect("failed");
    assert_eq!(failed["error"], "the app has no email provider settings");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_relay_settings_and_addresses_are_refused() {
    let app = TestApp::spawn_with(email_app()).await;
    let response = app
        .http
        .put(format!(
            "{}/admin/v1/apps/{}/providers/email",
            app.admin, app.app
        ))
        .bearer_auth(app.admin_token())
        .json(&json!({ "host": "smtp.example.com", "port": 587, "from": "not an address" }))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 422);
    let problem: serde_json::Value = response.json().await.expect("json");
    assert_eq!(problem["field"], "/from");
    let status = app
        .put_endpoint_as(
            &app.key,
            "u",
            "email",
            "inbox",
            &json!({ "address": "nobody" }),
        )
        .await;
    assert_eq!(status, 422);
    app.set_provider(&app.app, "email", &json!({ "host": "smtp.example.com", "port": 587, "username": "shop", "password": "s3cret-pass", "from": "shop@example.com" })).await;
    let response = app
        .http
        .get(format!("{}/admin/v1/apps/{}/providers", app.admin, app.app))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .expect("answers");
    let shown = response.text().await.expect("text");
    assert!(
        shown.contains("smtp.example.com") && !shown.contains("s3cret-pass"),
        "{shown}"
    );
}
