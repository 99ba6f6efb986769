//! Inbound SMS: mobile-originated messages from the SMSC simulator, concatenated by a UDH or by
//! the `sar_*` TLVs and sent out of order, each become one `inbound.sms` event of the feed,
//! whole and decoded, and every part is answered OK; a part that cannot be kept (Redis down) is
//! refused, sent again by the SMSC and the message still arrives whole.

use std::time::Duration;

use serde_json::{Value, json};
use sprayer_shared::model::Channel;

use super::support::{events_app, whole_feed};
use crate::support::app::TestApp;
use crate::support::owned::redis::OwnedRedis;
use crate::support::peers::smsc::SmscPeer;
use crate::support::wait::wait_until;

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `text` as UCS-2 (UTF-16BE) in three parts, cut inside its first two surrogate pairs.
fn ucs2_parts_cutting_pairs(text: &str) -> Vec<Vec<u8>> {
    let units: Vec<u16> = text.encode_utf16().collect();
    let high_surrogates = units
        .iter()
        .enumerate()
        .filter(|(_, unit)| (0xD800..0xDC00).contains(*unit))
        .map(|(index, _)| index + 1);
    let mut cuts = vec![0];
    cuts.extend(high_surrogates.take(2));
    cuts.push(units.len());
    assert_eq!(cuts.len(), 4, "two surrogate pairs in {text}");
    cuts.windows(2)
        .map(|range| {
            units[range[0]..range[1]]
                .iter()
                .flat_map(|unit| unit.to_be_bytes())
                .collect()
        })
        .collect()
}

/// An app with the events service serving `sms` through `peer`'s account, its bind up (the
/// dispatcher binds an app's account on its first send).
async fn bound_sms_app(
    peer: &SmscPeer,
    adjust: impl FnOnce(&mut sprayer_shared::Settings),
) -> TestApp {
    let app = events_app(|settings| {
        settings.accepter.channels = vec![Channel::Sms];
        adjust(settings);
    })
    .await;
    app.set_provider(&app.app, "sms", &peer.provider_settings("+15550001"))
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
    let sent = app
        .send_ok(&json!({ "to": { "user": "reader" }, "channels": ["sms"], "content": { "body": "Reply to this" } }))
        .await;
    app.wait_for_status(&sent, "sms", "delivered", 1, Duration::from_secs(20))
        .await;
    app
}

/// The simulator's log of the `deliver_sm_resp` of each MO it sent.
fn mo_answers(peer: &SmscPeer) -> Vec<Value> {
    peer.log()
        .into_iter()
        .filter(|event| event["kind"] == "mo")
        .collect()
}

/// The app's `inbound.sms` events, once there are `count`.
async fn inbound_events(app: &TestApp, count: usize) -> Vec<Value> {
    wait_until(Duration::from_secs(10), || async {
        let events = whole_feed(app, Some("inbound.sms")).await;
        (events.len() >= count).then_some(events)
    })
    .await
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concatenated_mobile_originated_sms_become_one_whole_inbound_event_each() {
    let peer = SmscPeer::start("inbox", "pw", 50);
    let app = bound_sms_app(&peer, |_| {}).await;

    // Three UCS-2 parts with a 16-bit reference in their UDH, sent 3, 1, 2.
    let greek = "Καλημέρα! Η παραγγελία σας 📦 στάλθηκε 🚚 και φτάνει αύριο 🎉";
    let parts = ucs2_parts_cutting_pairs(greek);
    for sequence in [3u8, 1, 2] {
        let mut message = vec![0x06, 0x08, 0x04, 0x12, 0x34, 3, sequence];
        message.extend_from_slice(&parts[usize::from(sequence - 1)]);
        peer.send_mo(&json!({
            "source_addr": "31612345678", "destination_addr": "15550001",
            "data_coding": 8, "esm_class": 0x40, "short_message": to_hex(&message),
        }));
    }
    // Two GSM 03.38 parts (one septet an octet; `[`, `]` and `€` are escapes) joined by the
    // sar_* TLVs, sent 2, 1: the first part ends with the escape of the `€`.
    let gsm = [
        b"Order ".as_slice(),
        &[0x1B, 0x3C],
        b"A-17",
        &[0x1B, 0x3E],
        b" costs 12",
        &[0x1B, 0x65],
        b", reply YES",
    ]
    .concat();
    let cut = gsm.iter().rposition(|&octet| octet == 0x1B).expect("€") + 1;
    for (sequence, range) in [(2u8, cut..gsm.len()), (1, 0..cut)] {
        peer.send_mo(&json!({
            "source_addr": "447700900123", "destination_addr": "15550001",
            "data_coding": 0, "esm_class": 0, "short_message": to_hex(&gsm[range]),
            "sar_msg_ref_num": 513, "sar_total_segments": 2, "sar_segment_seqnum": sequence,
        }));
    }

    let all_answered = wait_until(Duration::from_secs(30), || async {
        let answered = mo_answers(&peer);
        (answered
            .iter()
            .filter(|answer| answer["command_status"] == 0)
            .count()
            == 5)
            .then_some(())
    })
    .await;
    let answers = mo_answers(&peer);
    assert!(all_answered.is_some(), "every part answered: {answers:?}");
    assert!(
        answers.iter().all(|answer| answer["command_status"] == 0),
        "each part answered OK the first time: {answers:?}"
    );
    // The last part of each message was answered once the broker took its event; the feed
    // has it soon after.
    let events = inbound_events(&app, 2).await;
    assert_eq!(events.len(), 2, "one event a message: {events:?}");
    assert_ne!(events[0]["id"], events[1]["id"]);
    let from = |sender: &str| {
        events
            .iter()
            .find(|event| event["data"]["from"] == sender)
            .unwrap_or_else(|| panic!("an event from {sender}: {events:?}"))
    };
    let ucs2 = from("+31612345678");
    assert_eq!(ucs2["type"], "inbound.sms");
    assert_eq!(ucs2["data"]["text"], greek);
    assert_eq!(ucs2["data"]["to"], "+15550001");
    assert_eq!(ucs2["data"]["parts"], 3);
    assert_eq!(ucs2["data"]["encoding"], "ucs2");
    assert_eq!(ucs2["data"]["connector"], "inbox");
    assert!(ucs2["data"]["received_at"].is_string(), "{ucs2}");
    let gsm7 = from("+447700900123");
    assert_eq!(gsm7["data"]["text"], "Order [A-17] costs 12€, reply YES");
    assert_eq!(gsm7["data"]["to"], "+15550001");
    assert_eq!(gsm7["data"]["parts"], 2);
    assert_eq!(gsm7["data"]["encoding"], "gsm7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_part_refused_while_redis_is_down_comes_again_and_the_message_arrives_whole() {
    let mut redis = OwnedRedis::start().await;
    let peer = SmscPeer::start("outage", "pw", 50);
    let app = bound_sms_app(&peer, |settings| settings.redis.url = redis.url()).await;
    // Two GSM parts with an 8-bit reference in their UDH.
    let part = |sequence: u8, text: &[u8]| {
        let mut message = vec![0x05, 0x00, 0x03, 0x7F, 2, sequence];
        message.extend_from_slice(text);
        json!({
            "source_addr": "31687654321", "destination_addr": "15550001",
            "data_coding": 0, "esm_class": 0x40, "short_message": to_hex(&message),
        })
    };
    peer.send_mo(&part(1, b"First half, "));
    let kept = wait_until(Duration::from_secs(10), || async {
        (mo_answers(&peer).first()?["command_status"] == 0).then_some(())
    })
    .await;
    assert!(
        kept.is_some(),
        "the first part is kept: {:?}",
        mo_answers(&peer)
    );

    redis.stop().await;
    peer.send_mo(&part(2, b"second half."));
    let refused = wait_until(Duration::from_secs(30), || async {
        mo_answers(&peer).get(1)?["command_status"].as_u64()
    })
    .await;
    assert_eq!(
        refused,
        Some(0x64),
        "ESME_RX_T_APPN: {:?}",
        mo_answers(&peer)
    );
    redis.up().await;

    let events = inbound_events(&app, 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["data"]["text"], "First half, second half.");
    assert_eq!(events[0]["data"]["parts"], 2);
    assert_eq!(events[0]["data"]["from"], "+31687654321");
    // Answered once the broker took the event (the feed may have it first), and soon: a
    // refusal that misstates its length would have left the bind deaf until it dropped.
    let taken = wait_until(Duration::from_secs(10), || async {
        (mo_answers(&peer).last()?["command_status"] == 0).then_some(())
    })
    .await;
    assert!(
        taken.is_some(),
        "the refused part was sent again and taken: {:?}",
        mo_answers(&peer)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_and_start_by_sms_change_the_senders_preferences_and_say_so_in_the_event() {
    let peer = SmscPeer::start("keywords", "pw", 50);
    let app = bound_sms_app(&peer, |_| {}).await;
    let mo = |from: &str, text: &str| {
        peer.send_mo(&json!({
            "source_addr": from, "destination_addr": "15550001",
            "data_coding": 0, "esm_class": 0, "short_message": to_hex(text.as_bytes()),
        }));
    };
    let event_for = async |text: &str| {
        let found = wait_until(Duration::from_secs(15), || async {
            whole_feed(&app, Some("inbound.sms"))
                .await
                .into_iter()
                .find(|event| event["data"]["text"] == text)
        })
        .await;
        found.unwrap_or_else(|| panic!("an inbound.sms event for {text:?}"))
    };
    let preferences = async || app.get("/v1/users/reader/preferences").await.1;
    let send = async |category: Option<&str>| {
        let mut body =
            json!({"to": {"user": "reader"}, "channels": ["sms"], "content": {"body": "News"}});
        if let Some(category) = category {
            body["category"] = json!(category);
        }
        app.send_ok(&body).await
    };
    let wait = Duration::from_secs(20);

    // STOP from the reader's number: SMS off for them, and the event says who and what.
    mo("31612345678", "Stop");
    let stop = event_for("Stop").await;
    assert_eq!(stop["data"]["keyword"], "stop", "{stop}");
    assert_eq!(stop["data"]["user"], "reader", "{stop}");
    assert_eq!(stop["data"]["changed"], json!(["sms"]), "{stop}");
    assert_eq!(preferences().await, json!({"channels": {"sms": false}}));
    let skipped = send(None).await;
    app.wait_for_status(&skipped, "sms", "skipped", 1, wait)
        .await;

    // START turns it back on.
    mo("31612345678", "START");
    let start = event_for("START").await;
    assert_eq!(start["data"]["keyword"], "start", "{start}");
    assert_eq!(preferences().await, json!({"channels": {"sms": true}}));
    let sent = send(None).await;
    app.wait_for_status(&sent, "sms", "delivered", 1, wait)
        .await;

    // From a number no user registered: the event, nobody changed; an ordinary text is no
    // keyword.
    mo("447700900999", "stop");
    let stranger = event_for("stop").await;
    assert_eq!(stranger["data"]["keyword"], "stop", "{stranger}");
    assert_eq!(stranger["data"]["user"], Value::Null, "{stranger}");
    assert_eq!(stranger["data"]["changed"], json!([]), "{stranger}");
    mo("31612345678", "please stop the noise");
    let chat = event_for("please stop the noise").await;
    assert!(chat["data"].get("keyword").is_none(), "{chat}");

    // An app that maps STOP to a category: only that category's SMS stop.
    let (status, body) = crate::personal::call(
        &app,
        reqwest::Method::PUT,
        "/v1/categories/promo",
        &json!({"stop_by_sms": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stop_by_sms"], true, "{body}");
    mo("31612345678", "STOP.");
    let mapped = event_for("STOP.").await;
    assert_eq!(mapped["data"]["changed"], json!(["promo"]), "{mapped}");
    assert_eq!(
        preferences().await,
        json!({"channels": {"sms": true}, "categories": {"promo": {"channels": {"sms": false}}}})
    );
    let promo = send(Some("promo")).await;
    app.wait_for_status(&promo, "sms", "skipped", 1, wait).await;
    let plain = send(None).await;
    app.wait_for_status(&plain, "sms", "delivered", 1, wait)
        .await;
}
