//! One template in two locales, sent to users whose profiles say `en`, `fr` and `fr-CA`: each
//! channel (webhook, ws, SMTP, SMPP) gets the text of the user's language, UCS-2 SMS where the
//! text needs it, and the message records the version.

use std::time::Duration;

use serde_json::{Value, json};

use super::{call, put_ok};
use crate::support::app::TestApp;
use crate::support::receiver::{Receiver, webhook_secret};
use crate::support::stack::serve_ws;
use crate::support::wait::wait_until;
use crate::support::ws_client::WsClient;

const WAIT: Duration = Duration::from_secs(20);

fn shipped() -> Value {
    json!({
        "default_locale": "en",
        "schema": {"type": "object", "required": ["order"], "properties": {"order": {"type": "object", "required": ["id"]}}},
        "locales": {
            "en": {"title": "Order {{ order.id }} shipped", "body": "Hi {{ user.attributes.name }}, it is on its way."},
            "fr": {"title": "Commande {{ order.id }} expédiée", "body": "Bonjour {{ user.attributes.name }}, elle est en route."}
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_user_gets_the_template_in_their_locale_on_webhook_and_ws() {
    let app = TestApp::spawn_with(serve_ws).await;
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    let stored = put_ok(&app, "/v1/templates/order-shipped", &shipped()).await;
    assert_eq!(stored["version"], 1);
    let again = put_ok(&app, "/v1/templates/order-shipped", &shipped()).await;
    assert_eq!(again["version"], 2, "each PUT makes a new version");

    let people = [
        ("ann", "en", "Ann"),
        ("fabien", "fr", "Fabien"),
        ("celine", "fr-ca", "Céline"),
    ];
    let mut sockets = Vec::new();
    for (user, locale, name) in people {
        put_ok(
            &app,
            &format!("/v1/users/{user}"),
            &json!({"locale": locale, "attributes": {"name": name}}),
        )
        .await;
        app.put_webhook(user, "d1", &receiver.url(user), &secret)
            .await;
        let token = app.ws_token(user).await;
        sockets.push((user, WsClient::open(&app.ws_url(&token)).await));
    }
    let (_, profile) = app.get("/v1/users/celine").await;
    assert_eq!(profile["locale"], "fr-CA", "the tag is stored canonical");

    let id = app
        .send_ok(&json!({
            "to": {"users": ["ann", "fabien", "celine"]},
            "channels": ["http", "ws"],
            "template": "order-shipped",
            "data": {"order": {"id": "A-17"}},
        }))
        .await;
    let expect = |user: &str| match user {
        "ann" => ("Order A-17 shipped", "Hi Ann, it is on its way."),
        "fabien" => (
            "Commande A-17 expédiée",
            "Bonjour Fabien, elle est en route.",
        ),
        _ => (
            "Commande A-17 expédiée",
            "Bonjour Céline, elle est en route.",
        ),
    };
    for (user, socket) in &mut sockets {
        let message = socket
            .next_message(WAIT)
            .await
            .expect("the ws message arrives");
        let (title, body) = expect(user);
        assert_eq!(message["title"], title, "{user}: {message}");
        assert_eq!(message["body"], body, "{user}: {message}");
        socket.ack(std::slice::from_ref(&id)).await;
    }
    let hits = wait_until(WAIT, || async {
        let hits = receiver.hits();
        (hits.len() >= 3).then_some(hits)
    })
    .await
    .expect("three webhooks");
    for hit in hits {
        let body: Value = serde_json::from_slice(&hit.body).expect("json");
        let (title, text) = expect(&hit.path);
        assert_eq!(body["data"]["title"], title, "{}: {body}", hit.path);
        assert_eq!(body["data"]["body"], text, "{}: {body}", hit.path);
    }
    let summary = app.wait_for_status(&id, "http", "delivered", 3, WAIT).await;
    assert_eq!(
        summary["template"],
        json!({"name": "order-shipped", "version": 2})
    );

    // A locale named by the message wins over the profile's.
    let forced = app
        .send_ok(&json!({
            "to": {"user": "ann"}, "channels": ["http"], "template": "order-shipped",
            "data": {"order": {"id": "B-2"}}, "locale": "fr-BE",
        }))
        .await;
    let hit = wait_until(WAIT, || async {
        receiver
            .hits_for("ann")
            .into_iter()
            .find(|hit| hit.message_id() == forced)
    })
    .await
    .expect("the webhook arrives");
    let body: Value = serde_json::from_slice(&hit.body).expect("json");
    assert_eq!(body["data"]["title"], "Commande B-2 expédiée");
}

#[tokio::test]
async fn the_preview_shows_the_text_its_sms_encoding_and_parts() {
    let app = TestApp::spawn().await;
    put_ok(&app, "/v1/templates/code", &json!({
        "default_locale": "en",
        "locales": {
            "en": {"body": "Your code is {{ code }}", "sms": {"text": "Code {{ code }}"}},
            "ru": {"body": "Ваш код {{ code }}", "sms": {"text": "Ваш код {{ code }}. {{ note }}"}}
        }
    }))
    .await;
    let (status, preview) = call(
        &app,
        reqwest::Method::POST,
        "/v1/templates/code/render",
        &json!({"data": {"code": "123456", "note": "x"}, "locale": "en-GB", "channel": "sms"}),
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["locale"], "en");
    assert_eq!(preview["fields"]["text"], "Code 123456");
    assert_eq!(
        preview["sms"],
        json!({"encoding": "gsm", "parts": 1, "characters": 11})
    );
    let long = "д".repeat(80);
    let (_, preview) = call(
        &app,
        reqwest::Method::POST,
        "/v1/templates/code/render",
        &json!({"data": {"code": "1", "note": long}, "locale": "ru", "channel": "sms"}),
    )
    .await;
    assert_eq!(preview["sms"]["encoding"], "ucs2", "{preview}");
    assert_eq!(preview["sms"]["parts"], 2, "{preview}");
    let (_, preview) = call(
        &app,
        reqwest::Method::POST,
        "/v1/templates/code/render",
        &json!({"data": {"code": "1", "note": ""}, "channel": "apns"}),
    )
    .await;
    assert!(
        preview["apns_payload_bytes"]
            .as_u64()
            .is_some_and(|size| size > 20),
        "{preview}"
    );
    let (status, listed) = app.get("/v1/templates").await;
    assert_eq!(status, 200);
    assert_eq!(listed["items"][0]["name"], "code");
    let (status, _) = call(
        &app,
        reqwest::Method::DELETE,
        "/v1/templates/code",
        &Value::Null,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = app.get("/v1/templates/code").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_smtp_and_smsc_peers_get_each_users_language_and_ucs2_where_it_is_needed() {
    use mailparse::MailHeaderMap;

    use crate::support::peers::smsc::{SmscPeer, hex_bytes, ucs2_text};
    use crate::support::peers::smtp::SmtpPeer;

    let app = TestApp::spawn_with(|settings| {
        settings.accepter.channels = vec![
            sprayer_shared::model::Channel::Email,
            sprayer_shared::model::Channel::Sms,
        ];
    })
    .await;
    let smtp = SmtpPeer::start();
    let smsc = SmscPeer::start("locales", "pw", 50);
    app.set_provider(
        &app.app,
        "email",
        &json!({"host": "127.0.0.1", "port": smtp.peer.port, "tls": "none", "from": "Shop <no-reply@shop.example>"}),
    )
    .await;
    app.set_provider(&app.app, "sms", &smsc.provider_settings("15550001"))
        .await;
    put_ok(&app, "/v1/templates/shipped", &json!({
        "default_locale": "en",
        "locales": {
            "en": {"title": "Order {{ order.id }} shipped", "body": "It is on its way.", "sms": {"text": "Order {{ order.id }} shipped"}},
            "fr": {"title": "Commande {{ order.id }} expédiée", "body": "Elle est en route.", "sms": {"text": "Commande {{ order.id }} partie"}},
            "ru": {"title": "Заказ {{ order.id }} отправлен", "body": "Он в пути.", "sms": {"text": "Заказ {{ order.id }} отправлен"}}
        }
    }))
    .await;
    let people = [
        ("ann", "en-GB", "+31600000001"),
        ("fabien", "fr-CA", "+31600000002"),
        ("ivan", "ru", "+31600000003"),
    ];
    for (user, locale, msisdn) in people {
        put_ok(
            &app,
            &format!("/v1/users/{user}"),
            &json!({"locale": locale}),
        )
        .await;
        let email = json!({"address": format!("{user}@example.com")});
        assert_eq!(
            app.put_endpoint_as(&app.key, user, "email", "mail", &email)
                .await,
            201
        );
        let sms = json!({"msisdn": msisdn});
        assert_eq!(
            app.put_endpoint_as(&app.key, user, "sms", "phone", &sms)
                .await,
            201
        );
    }
    let id = app
        .send_ok(&json!({
            "to": {"users": ["ann", "fabien", "ivan"]},
            "template": "shipped",
            "data": {"order": {"id": "A-17"}},
        }))
        .await;
    app.wait_for_status(&id, "email", "sent", 3, Duration::from_secs(30))
        .await;
    app.wait_for_status(&id, "sms", "delivered", 3, Duration::from_secs(30))
        .await;

    // Mail: the title as the subject and the body as the text, in each user's language.
    let expected_mail = [
        ("ann@example.com", "Order A-17 shipped", "It is on its way."),
        (
            "fabien@example.com",
            "Commande A-17 expédiée",
            "Elle est en route.",
        ),
        ("ivan@example.com", "Заказ A-17 отправлен", "Он в пути."),
    ];
    let mails = smtp.mails();
    assert_eq!(mails.len(), 3);
    for (to, subject, text) in expected_mail {
        let raw = mails
            .iter()
            .find(|raw| {
                mailparse::parse_mail(raw)
                    .ok()
                    .and_then(|mail| mail.headers.get_first_value("To"))
                    .is_some_and(|value| value.contains(to))
            })
            .unwrap_or_else(|| panic!("a mail to {to}"));
        let mail = mailparse::parse_mail(raw).expect("a mail");
        assert_eq!(
            mail.headers.get_first_value("Subject").as_deref(),
            Some(subject)
        );
        let plain = std::iter::once(&mail)
            .chain(mail.subparts.iter())
            .find(|part| part.ctype.mimetype == "text/plain")
            .expect("a text part");
        assert!(
            plain.get_body().expect("a body").contains(text),
            "{to}: {:?}",
            plain.get_body()
        );
    }

    // SMS: GSM 03.38 in English and French, UCS-2 in Russian.
    let submits = smsc.accepted_submits();
    assert_eq!(submits.len(), 3, "{submits:?}");
    let text_to = |number: &str| {
        let submit = submits
            .iter()
            .find(|submit| submit["destination_addr"] == number)
            .unwrap_or_else(|| panic!("a submit to {number}: {submits:?}"));
        let bytes = hex_bytes(submit["short_message"].as_str().expect("hex"));
        (submit["data_coding"].as_u64(), bytes)
    };
    let (coding, bytes) = text_to("31600000001");
    assert_eq!((coding, bytes), (Some(0), b"Order A-17 shipped".to_vec()));
    let (coding, bytes) = text_to("31600000002");
    assert_eq!((coding, bytes), (Some(0), b"Commande A-17 partie".to_vec()));
    let (coding, bytes) = text_to("31600000003");
    assert_eq!(coding, Some(8), "UCS-2 for Cyrillic");
    assert_eq!(ucs2_text(&bytes), "Заказ A-17 отправлен");
}
