//! The `sms` channel against an SMSC simulator: PDUs as SMPP 3.4 wants them, receipts mapped to
//! deliveries, concatenation and UCS-2, rejected numbers pruned, and an SMSC killed mid-window.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sprayer_shared::model::Channel;

use crate::support::app::TestApp;
use crate::support::isolation::{AppSide, TwoApps, assert_apps_do_not_cross};
use crate::support::peers::smsc::{SmscPeer, hex_bytes, ucs2_text};
use crate::support::wait::wait_until;

async fn sms_app() -> TestApp {
    TestApp::spawn_with(|settings| {
        settings.accepter.channels = vec![Channel::Http, Channel::Sms];
        settings.sms.response_timeout = Duration::from_secs(3);
    })
    .await
}

fn account(peer: &SmscPeer, system_id: &str, password: &str, source: &str) -> Value {
    json!({ "host": "127.0.0.1", "port": peer.peer.port, "system_id": system_id, "password": password, "source": source })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_gets_sms_with_receipts_and_rejected_numbers_are_pruned() {
    let peer = SmscPeer::start("shop", "secret", 100);
    let app = sms_app().await;
    app.set_provider(&app.app, "sms", &account(&peer, "shop", "secret", "Shop"))
        .await;
    let mut numbers: Vec<(String, String)> = (0..10)
        .map(|index| (format!("phone{index}"), format!("+3161000000{index}")))
        .collect();
    for (user, number) in [
        ("rejected", "+999123456789"),
        ("throttled", "+888123456789"),
        ("undeliverable", "+777123456789"),
    ] {
        numbers.push((user.to_owned(), number.to_owned()));
    }
    for (user, number) in &numbers {
        assert_eq!(
            app.put_endpoint_as(
                &app.key,
                user,
                "sms",
                "mobile",
                &json!({ "msisdn": number })
            )
            .await,
            201
        );
        app.add_member("customers", user).await;
    }
    let id = app
        .send_ok(&json!({ "to": { "group": "customers" }, "channels": ["sms"], "content": { "title": "ignored", "body": "Your code is 1234" } }))
        .await;
    let summary = app
        .wait_for_status(&id, "sms", "delivered", 11, Duration::from_secs(30))
        .await;
    let summary = wait_until(Duration::from_secs(10), || async {
        let current = app.summary(&id).await?;
        (current["summary"]["sms"]["failed"] == 1).then_some(current)
    })
    .await
    .unwrap_or(summary);
    assert_eq!(
        summary["summary"]["sms"],
        json!({ "delivered": 11, "failed": 1, "unregistered": 1 }),
        "{summary}"
    );

    let submits = peer
        .log()
        .into_iter()
        .filter(|event| event["kind"] == "submit")
        .collect::<Vec<_>>();
    let mut per_destination: HashMap<String, Vec<&Value>> = HashMap::new();
    for submit in &submits {
        per_destination
            .entry(
                submit["destination_addr"]
                    .as_str()
                    .expect("destination")
                    .to_owned(),
            )
            .or_default()
            .push(submit);
    }
    for index in 0..10 {
        let seen = &per_destination[&format!("3161000000{index}")];
        assert_eq!(seen.len(), 1);
        let submit = seen[0];
        assert_eq!(submit["system_id"], "shop");
        assert_eq!(submit["source_addr"], "Shop");
        assert_eq!(submit["data_coding"], 0);
        assert_eq!(submit["registered_delivery"], 1);
        assert_eq!(
            hex_bytes(submit["short_message"].as_str().expect("hex")),
            b"Your code is 1234"
        );
    }
    let throttled = &per_destination["888123456789"];
    assert_eq!(throttled[0]["status"], 0x58, "throttled first");
    let accepted = throttled
        .iter()
        .filter(|submit| submit["status"] == 0)
        .count();
    assert_eq!(accepted, 1, "then accepted once");
    let deliveries = app.all_deliveries(&id, 50).await;
    let status_of = |user: &str| {
        deliveries
            .iter()
            .find(|d| d["user"] == user)
            .map(|d| d["status"].clone())
    };
    assert_eq!(status_of("undeliverable"), Some(json!("failed")));
    assert_eq!(status_of("rejected"), Some(json!("unregistered")));
    // The SMSC's own codes: the receipt's state, the refusal's command_status.
    let code_of = |user: &str| {
        deliveries
            .iter()
            .find(|d| d["user"] == user)
            .map(|d| d["code"].clone())
    };
    assert_eq!(code_of("undeliverable"), Some(json!("UNDELIV")));
    assert_eq!(code_of("rejected"), Some(json!("0x0000000B")));
    assert_eq!(code_of("phone0"), Some(json!("DELIVRD")));
    let pruned = wait_until(Duration::from_secs(5), || async {
        (app.get("/v1/users/rejected/endpoints").await.0 == 404).then_some(())
    })
    .await;
    assert!(pruned.is_some(), "the rejected number was removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_texts_are_concatenated_and_other_scripts_go_as_ucs2() {
    let peer = SmscPeer::start("shop", "secret", 50);
    let app = sms_app().await;
    app.set_provider(
        &app.app,
        "sms",
        &account(&peer, "shop", "secret", "+15550001"),
    )
    .await;
    assert_eq!(
        app.put_endpoint_as(
            &app.key,
            "reader",
            "sms",
            "mobile",
            &json!({ "msisdn": "+31612345678" })
        )
        .await,
        201
    );
    let long: String = (0..300)
        .map(|index| char::from(b'a' + u8::try_from(index % 26).expect("small")))
        .collect();
    let first = app.send_ok(&json!({ "to": { "user": "reader" }, "channels": ["sms"], "content": { "body": long } })).await;
    app.wait_for_status(&first, "sms", "delivered", 1, Duration::from_secs(20))
        .await;
    let unicode = "Привет, мир! Заказ №42 готов 👋";
    let second = app.send_ok(&json!({ "to": { "user": "reader" }, "channels": ["sms"], "content": { "body": unicode } })).await;
    app.wait_for_status(&second, "sms", "delivered", 1, Duration::from_secs(20))
        .await;

    let submits = peer.accepted_submits();
    assert_eq!(submits.len(), 3, "two parts, then one UCS-2 message");
    let (parts, rest) = submits.split_at(2);
    let mut text = Vec::new();
    for (index, part) in parts.iter().enumerate() {
        assert_eq!(
            part["esm_class"].as_u64().expect("esm") & 0x40,
            0x40,
            "UDH indicator"
        );
        assert_eq!(part["source_addr"], "15550001");
        assert_eq!(part["udh"]["total"], 2);
        assert_eq!(part["udh"]["seq"], index + 1);
        assert_eq!(
            part["udh"]["ref"], parts[0]["udh"]["ref"],
            "one reference for all parts"
        );
        let bytes = hex_bytes(part["short_message"].as_str().expect("hex"));
        assert_eq!(&bytes[..3], &[0x05, 0x00, 0x03]);
        text.extend_from_slice(&bytes[6..]);
    }
    assert_eq!(
        String::from_utf8(text).expect("ascii"),
        long,
        "the parts join to the text"
    );
    let ucs2 = &rest[0];
    assert_eq!(ucs2["data_coding"], 8);
    let bytes = hex_bytes(ucs2["short_message"].as_str().expect("hex"));
    assert_eq!(ucs2_text(&bytes), unicode, "the UCS-2 text round-trips");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_smsc_killed_mid_window_loses_nothing_and_its_receipts_still_map() {
    // Receipts wait 1.5 s, so some are still pending in the SMSC when it is killed.
    let mut peer = SmscPeer::start("bulk", "pw", 1_500);
    let app = sms_app().await;
    app.set_provider(&app.app, "sms", &account(&peer, "bulk", "pw", "Bulk"))
        .await;
    let users: Vec<String> = (0..300).map(|index| format!("sub{index}")).collect();
    for (index, user) in users.iter().enumerate() {
        assert_eq!(
            app.put_endpoint_as(
                &app.key,
                user,
                "sms",
                "mobile",
                &json!({ "msisdn": format!("+3162{index:07}") })
            )
            .await,
            201
        );
        app.add_member("bulk", user).await;
    }
    let id = app.send_ok(&json!({ "to": { "group": "bulk" }, "channels": ["sms"], "content": { "body": "Maintenance tonight" } })).await;
    let killed_after = wait_until(Duration::from_secs(20), || async {
        let accepted = peer.accepted_submits().len();
        (accepted >= 20).then_some(accepted)
    })
    .await
    .expect("submits flow");
    peer.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    peer.restart(100);

    let summary = app
        .wait_for_status(&id, "sms", "delivered", 300, Duration::from_secs(60))
        .await;
    assert_eq!(summary["total"], 300, "{summary}");
    let submits = peer.accepted_submits();
    let mut accepted_per_number: HashMap<String, usize> = HashMap::new();
    for submit in &submits {
        *accepted_per_number
            .entry(
                submit["destination_addr"]
                    .as_str()
                    .expect("destination")
                    .to_owned(),
            )
            .or_default() += 1;
    }
    assert_eq!(accepted_per_number.len(), 300, "every number got its SMS");
    let duplicates: usize = accepted_per_number.values().map(|count| count - 1).sum();
    println!("SMSC killed after {killed_after} accepted submits; {duplicates} sent twice, 0 lost");
    assert!(
        duplicates <= 10,
        "duplicates stay within the window: {duplicates}"
    );
    let receipts_after_restart = peer
        .log()
        .iter()
        .filter(|event| event["kind"] == "receipt")
        .count();
    assert!(receipts_after_restart > 0);
    let response = app
        .request(
            Method::GET,
            &format!("/v1/messages/{id}/deliveries?status=sent"),
        )
        .send()
        .await
        .expect("answers");
    let page: Value = response.json().await.expect("json");
    assert_eq!(
        page["items"].as_array().map(Vec::len),
        Some(0),
        "no delivery is left without its receipt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apps_bind_with_their_own_smpp_accounts_and_never_cross() {
    let first = SmscPeer::start("first", "pw1", 50);
    let second = SmscPeer::start("second", "pw2", 50);
    let app = sms_app().await;
    let smscs = [
        (&first, "first", "pw1", "First"),
        (&second, "second", "pw2", "Second"),
    ];
    let msisdn = json!({ "msisdn": "+31611112222" });
    let two = TwoApps {
        channel: "sms",
        device: "mobile",
        content: json!({ "body": "hello" }),
        sides: smscs.map(|(peer, system_id, password, source)| AppSide {
            provider: Some(account(peer, system_id, password, source)),
            address: msisdn.clone(),
        }),
    };
    // Each SMSC binds its own account: a submit carries the system id and source it bound with.
    let [mine, _] = assert_apps_do_not_cross(
        &app,
        two,
        |side| std::future::ready(smscs[side].0.accepted_submits()),
        |side, submit| {
            let (_, system_id, _, source) = smscs[side];
            (submit["system_id"].as_str(), submit["source_addr"].as_str())
                == (Some(system_id), Some(source))
        },
    )
    .await;
    app.wait_for_status(&mine, "sms", "delivered", 1, Duration::from_secs(20))
        .await;
    let (status, _) = app
        .send(
            &json!({ "to": { "user": "same" }, "channels": ["sms"], "content": { "body": "x" } }),
            None,
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        app.put_endpoint_as(
            &app.key,
            "bad",
            "sms",
            "mobile",
            &json!({ "msisdn": "0612345678" })
        )
        .await,
        422,
        "E.164 only"
    );
}
