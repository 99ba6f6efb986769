//! The operator console and what backs it: `GET /admin/v1/stats` counts per app what was
//! accepted and how deliveries ended, with the queue depths polled from RabbitMQ (dead letters
//! among them) and the gauges on `/metrics`; headless Chromium opens `/console` on the admin
//! listener, signs in, draws it, and the screenshot shows charts; a wrong token is refused.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::app::TestApp;
use crate::support::local::TempDir;
use crate::support::peers::browser::BrowserScript;
use crate::support::receiver::{Behavior, Receiver, webhook_secret};
use crate::support::wait::wait_until;

const WAIT: Duration = Duration::from_secs(60);

/// The admin stats, as JSON.
async fn stats(app: &TestApp, token: &str, query: &str) -> (StatusCode, Value) {
    let response = app
        .http
        .get(format!("{}/admin/v1/stats{query}", app.admin))
        .bearer_auth(token)
        .send()
        .await
        .expect("the admin API answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn total(series: &Value) -> u64 {
    series
        .as_array()
        .map_or(0, |counts| counts.iter().filter_map(Value::as_u64).sum())
}

fn queue<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|queue| queue["queue"] == name)
}

/// Two apps send; one recipient takes everything, one refuses (failed at once), one keeps
/// answering 500 until its delivery is given up and dead-lettered.
async fn traffic(app: &TestApp, receiver: &Receiver) -> (String, String) {
    let secret = webhook_secret();
    for user in ["taker", "refuser", "flaky"] {
        app.put_webhook(user, "d1", &receiver.url(user), &secret)
            .await;
    }
    receiver.plan("refuser", &[Behavior::Status(400); 2]);
    let attempts = app.settings.amqp.retry_tiers.len() + 1;
    receiver.plan("flaky", &vec![Behavior::Status(500); attempts]);
    let send = |user: &str, n: usize| json!({"to": {"user": user}, "content": {"title": "Console", "body": format!("message {n}")}});
    let mut taken = Vec::new();
    for n in 0..5 {
        taken.push(app.send_ok(&send("taker", n)).await);
    }
    let refused = [
        app.send_ok(&send("refuser", 0)).await,
        app.send_ok(&send("refuser", 1)).await,
    ];
    let flaky = app.send_ok(&send("flaky", 0)).await;

    let (other, other_key) = app.create_app("console-shop").await;
    app.put_webhook_as(&other_key, "buyer", "d1", &receiver.url("buyer"), &secret)
        .await;
    let sent = app
        .request_as(&other_key, reqwest::Method::POST, "/v1/messages")
        .json(&send("buyer", 0))
        .send()
        .await
        .expect("answers");
    assert_eq!(sent.status(), StatusCode::ACCEPTED);

    for id in &taken {
        app.wait_for_status(id, "http", "delivered", 1, WAIT).await;
    }
    for id in &refused {
        app.wait_for_status(id, "http", "failed", 1, WAIT).await;
    }
    app.wait_for_status(&flaky, "http", "failed", 1, WAIT).await;
    (other, other_key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_draws_traffic_feedback_queues_and_dead_letters_and_refuses_a_wrong_token() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let token = app.admin_token();
    // A service installs its Prometheus recorder at start; in the tests the first scrape does.
    let scrape = || async {
        let response = app.http.get(format!("{}/metrics", app.base)).send().await;
        response.expect("metrics").text().await.expect("text")
    };
    scrape().await;
    let created = app
        .request(reqwest::Method::POST, "/v1/event-endpoints")
        .json(&json!({ "url": receiver.url("events"), "events": ["delivery.*"] }))
        .send()
        .await
        .expect("answers");
    assert_eq!(created.status(), StatusCode::CREATED);
    let (other, _) = traffic(&app, &receiver).await;

    // The stats: both apps, the busiest first, and every delivery under the status it reached
    // (the other app's record may still be on its way to MongoDB).
    let body = wait_until(Duration::from_secs(10), || async {
        let (status, body) = stats(&app, &token, "?window=15m").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (body["apps"].as_array().map(Vec::len) == Some(2)).then_some(body)
    })
    .await
    .expect("both apps in the stats");
    assert_eq!(body["window"], "15m");
    assert_eq!(body["bucket_seconds"], 60);
    assert_eq!(body["buckets"], 15);
    let apps = body["apps"].as_array().expect("apps");
    assert_eq!(apps.len(), 2, "{body}");
    let (mine, theirs) = (&apps[0], &apps[1]);
    assert_eq!(mine["id"], app.app.as_str());
    assert_eq!(mine["name"], "test");
    assert_eq!(total(&mine["accepted"]), 8, "{mine}");
    assert_eq!(total(&mine["deliveries"]["delivered"]), 5, "{mine}");
    assert_eq!(total(&mine["deliveries"]["failed"]), 3, "{mine}");
    assert_eq!(theirs["id"], other.as_str());
    assert_eq!(theirs["name"], "console-shop");
    assert_eq!(total(&theirs["accepted"]), 1, "{theirs}");
    assert_eq!(mine["accepted"].as_array().map(Vec::len), Some(15));
    // The event endpoint, with its state (nobody serves it here: it is not failing).
    let endpoints = body["event_endpoints"].as_array().expect("event endpoints");
    assert_eq!(endpoints.len(), 1, "{body}");
    assert_eq!(endpoints[0]["app"], app.app.as_str());
    assert_eq!(endpoints[0]["url"], receiver.url("events"));
    assert_eq!(endpoints[0]["enabled"], true);

    // The queues by role name, and the dead letter once the poll (every 15 s) has seen it.
    let polled = wait_until(Duration::from_secs(40), || async {
        let (_, body) = stats(&app, &token, "").await;
        let dead = queue(&body["dead_letters"], "jobs.http.dead")?["messages"].as_u64()?;
        (dead >= 1).then_some(body)
    })
    .await
    .expect("the dead-lettered delivery shows in jobs.http.dead within two polls");
    assert_eq!(polled["window"], "1h");
    assert!(polled["queues_polled_at"].is_string(), "{polled}");
    for name in [
        "jobs.http",
        "jobs.http.retry.500ms",
        "jobs.http.dead",
        "status",
        "status.dead",
    ] {
        assert!(queue(&polled["queues"], name).is_some(), "{name}: {polled}");
    }
    assert!(
        queue(&polled["queues"], "jobs.http").expect("jobs.http")["consumers"]
            .as_u64()
            .is_some_and(|consumers| consumers >= 1),
        "the dispatcher consumes jobs.http: {polled}"
    );
    assert!(
        !polled["queues"]
            .to_string()
            .contains(&app.settings.amqp.prefix),
        "queue names carry no installation prefix"
    );

    // The gauges of the poll and the counters beside them, on /metrics.
    let metrics = scrape().await;
    for line in [
        "sprayer_queue_messages{queue=\"jobs.http.dead\"}",
        "sprayer_queue_consumers{queue=\"jobs.http\"}",
        "sprayer_dead_letters_total{channel=\"http\"}",
        "sprayer_deliveries_total{channel=\"http\",status=\"failed\"}",
        "sprayer_provider_seconds_bucket{channel=\"http\",le=",
    ] {
        assert!(metrics.contains(line), "/metrics has no {line}");
    }

    // The scheduler's timers: a message scheduled an hour ahead is pending, none overdue.
    let (_, before) = stats(&app, &token, "").await;
    assert_eq!(before["timers"]["overdue"], 0, "{before}");
    let later = sprayer_shared::feed::rfc3339_ms(sprayer_shared::model::now_ms() + 3_600_000);
    app.send_ok(
        &json!({ "to": { "user": "later" }, "content": { "body": "later" }, "send_at": later }),
    )
    .await;
    let (_, after) = stats(&app, &token, "").await;
    assert_eq!(
        after["timers"]["pending"].as_u64(),
        before["timers"]["pending"]
            .as_u64()
            .map(|pending| pending + 1),
        "{after}"
    );

    // Refusals as problems.
    let (status, problem) = stats(&app, "wrong", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    assert_eq!(problem["type"], "/problems/unauthorized");
    let (status, problem) = stats(&app, &token, "?window=2h").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["field"], "query");

    // The page itself: static, locked down, on the admin listener only.
    let page = app
        .http
        .get(format!("{}/console", app.admin))
        .send()
        .await
        .expect("console");
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(policy.contains("script-src 'self'") && policy.contains("connect-src 'self'"));
    let on_api = app
        .http
        .get(format!("{}/console", app.base))
        .send()
        .await
        .expect("answers");
    assert_eq!(on_api.status(), StatusCode::NOT_FOUND);

    // Chromium: sign in, wait for the charts, take the screenshot; a wrong token is refused.
    let dir = TempDir::new("sprayer-console");
    let png = dir.path().join("console.png");
    let console = format!("{}/console", app.admin);
    let png_path = png.display().to_string();
    let seconds = WAIT.as_secs().to_string();
    let mut browser = BrowserScript::start(
        "console_check.js",
        &[&console, &token, &png_path, "2", &seconds],
    );
    // Two app cards of two charts each, the queue chart, one dead-letter tile above 0, the
    // event endpoint.
    assert_eq!(browser.next_line(WAIT).await, "RENDERED 2 5 1 1");
    assert_eq!(browser.next_line(WAIT).await, "STORED session=true local=0");
    assert_eq!(
        browser.next_line(WAIT).await,
        format!("SCREENSHOT {png_path}")
    );
    assert_eq!(
        browser.next_line(WAIT).await,
        "REFUSED the admin token is not valid"
    );
    browser.assert_success(WAIT).await;
    check_screenshot(&std::fs::read(&png).expect("the screenshot"));
    if let Ok(keep) = std::env::var("SPRAYER_KEEP_SCREENSHOT") {
        std::fs::copy(&png, keep).expect("copy the screenshot");
    }
}

/// The screenshot decodes and is no blank page: many colours, and the charts' own colours
/// (accepted blue, delivered green, failed and dead-letter red) cover whole areas.
fn check_screenshot(bytes: &[u8]) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buffer = vec![0; reader.output_buffer_size().expect("a size")];
    let frame = reader.next_frame(&mut buffer).expect("a frame");
    assert!(
        frame.width >= 1000 && frame.height >= 600,
        "{}x{}",
        frame.width,
        frame.height
    );
    let channels = match frame.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected colour type {other:?}"),
    };
    assert_eq!(frame.bit_depth, png::BitDepth::Eight);
    let pixels: Vec<[u8; 3]> = buffer[..frame.buffer_size()]
        .chunks_exact(channels)
        .map(|pixel| [pixel[0], pixel[1], pixel[2]])
        .collect();
    let colours: HashSet<[u8; 3]> = pixels.iter().copied().collect();
    let count = |rgb: [u8; 3]| pixels.iter().filter(|pixel| **pixel == rgb).count();
    let background = count([0xf4, 0xf6, 0xf8]) + count([0xff, 0xff, 0xff]);
    let inked = pixels.len() - background;
    eprintln!(
        "screenshot: {}x{}, {} colours, {:.1}% not background",
        frame.width,
        frame.height,
        colours.len(),
        100.0 * inked as f64 / pixels.len() as f64
    );
    assert!(colours.len() > 100, "only {} colours", colours.len());
    assert!(
        inked * 20 > pixels.len(),
        "under 5% of the page is drawn on"
    );
    for (what, rgb) in [
        ("accepted line", [0x25, 0x63, 0xeb]),
        ("delivered bars", [0x16, 0xa3, 0x4a]),
        ("failed bars and the dead-letter queue", [0xdc, 0x26, 0x26]),
    ] {
        assert!(count(rgb) >= 30, "no {what} in the screenshot");
    }
}
