//! The inbox without a WebSocket: Server-Sent Events resumed with `Last-Event-ID` get exactly
//! what they missed, in order; a long-poll gets a message sent while it waited; acks over HTTP
//! remove messages as the socket's do; bad cursors and tokens are problems.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::app::TestApp;
use crate::support::stack::serve_ws;

const WAIT: Duration = Duration::from_secs(30);

/// One Server-Sent Event.
#[derive(Debug, Clone, Default, PartialEq)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: String,
}

/// An open event stream, read as it comes.
struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    async fn open(app: &TestApp, base: &str, token: &str, last: Option<&str>) -> SseReader {
        let mut request = app
            .http
            .get(format!("{base}/v1/sse?token={token}"))
            .header("accept", "text/event-stream");
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        let response = request.send().await.expect("the deliverer answers");
        assert_eq!(response.status(), StatusCode::OK);
        let kind = crate::support::local::content_type(&response);
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        SseReader {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped) within `within`.
    async fn next(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    event: "message".into(),
                    ..SseEvent::default()
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        event.event = value.trim().to_owned();
                        any = true;
                    } else if let Some(value) = line.strip_prefix("id:") {
                        event.id = Some(value.trim().to_owned());
                    } else if let Some(value) = line.strip_prefix("data:") {
                        event
                            .data
                            .push_str(value.strip_prefix(' ').unwrap_or(value));
                        any = true;
                    }
                }
                if any {
                    return Some(event);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next `message` event within `within`, skipping others.
    async fn next_message(&mut self, within: Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next(left).await?;
            if event.event == "message" {
                let data = serde_json::from_str(&event.data).expect("a message as JSON");
                return Some((event.id.expect("a message has an id"), data));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_after_last_event_id_with_exactly_what_it_missed() {
    let app = TestApp::spawn_with(serve_ws).await;
    let base = app.ws.clone().expect("ws").replacen("ws://", "http://", 1);
    let token = app.ws_token("sse-user").await;
    let mut stream = SseReader::open(&app, &base, &token, None).await;
    let counts = stream.next(WAIT).await.expect("counts first");
    assert_eq!(counts.event, "counts");

    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(app.send_ws("sse-user", &format!("live {n}")).await);
    }
    let mut last = String::new();
    for id in &ids {
        let (seq, message) = stream.next_message(WAIT).await.expect("a live message");
        assert_eq!(message["id"], id.as_str());
        last = seq;
    }
    drop(stream);
    for n in 0..2 {
        ids.push(app.send_ws("sse-user", &format!("missed {n}")).await);
    }
    // Resumed: exactly the two it missed, in order, though the first three are not acked.
    let mut stream = SseReader::open(&app, &base, &token, Some(&last)).await;
    for id in &ids[3..] {
        let (_, message) = stream.next_message(WAIT).await.expect("a missed message");
        assert_eq!(message["id"], id.as_str());
    }
    assert!(
        stream.next_message(Duration::from_secs(1)).await.is_none(),
        "nothing more"
    );
    for id in &ids {
        app.wait_for_status(id, "ws", "sent", 1, WAIT).await;
    }

    // Acked over HTTP: gone from a fresh stream that starts at the beginning.
    let acked = app
        .http
        .post(format!("{base}/v1/inbox/ack"))
        .bearer_auth(&token)
        .json(&json!({"ids": ids}))
        .send()
        .await
        .expect("answers");
    assert_eq!(acked.status(), StatusCode::OK);
    for id in &ids {
        app.wait_for_status(id, "ws", "delivered", 1, WAIT).await;
    }
    let mut fresh = SseReader::open(&app, &base, &token, None).await;
    let marker = app.send_ws("sse-user", "marker").await;
    let (_, first) = fresh.next_message(WAIT).await.expect("the marker");
    assert_eq!(
        first["id"],
        marker.as_str(),
        "acked messages do not come again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_gets_what_was_sent_while_it_waited_and_bad_cursors_are_refused() {
    let app = TestApp::spawn_with(|settings| {
        serve_ws(settings);
        settings.deliverer.poll_timeout = Duration::from_secs(2);
    })
    .await;
    let base = app.ws.clone().expect("ws").replacen("ws://", "http://", 1);
    let token = app.ws_token("poller").await;
    let poll = |after: String| {
        let request = app
            .http
            .get(format!("{base}/v1/poll?token={token}&after={after}"));
        async move {
            let response = request.send().await.expect("answers");
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };

    // Nothing pending: it waits, and a message sent meanwhile answers it.
    let started = Instant::now();
    let waiting = tokio::spawn(poll("0".into()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let id = app.send_ws("poller", "while you waited").await;
    let (status, answer) = waiting.await.expect("the poll");
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered on arrival, not at the timeout"
    );
    assert_eq!(
        answer["messages"][0]["message"]["id"],
        id.as_str(),
        "{answer}"
    );
    let cursor = answer["cursor"].as_str().expect("a cursor").to_owned();

    // From the cursor on, nothing: an empty answer at the timeout.
    let started = Instant::now();
    let (status, empty) = poll(cursor.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(empty["messages"], json!([]), "{empty}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(empty["cursor"], cursor.as_str());
    // Not acked: a poll from the start gets it again.
    let (_, again) = poll("0".into()).await;
    assert_eq!(again["messages"][0]["message"]["id"], id.as_str());

    // Beyond the newest, not a number, or no token: problems naming the input.
    let beyond = (cursor.parse::<i64>().expect("a number") + 10_000_000_000).to_string();
    let (status, problem) = poll(beyond).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["field"], "after");
    let (status, problem) = poll("soon".into()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["field"], "after");
    let anonymous = app
        .http
        .get(format!("{base}/v1/sse"))
        .send()
        .await
        .expect("answers");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let stale = app
        .http
        .get(format!("{base}/v1/sse?token={token}"))
        .header("last-event-id", "not-a-seq")
        .send()
        .await
        .expect("answers");
    assert_eq!(stale.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = stale.json().await.expect("problem");
    assert_eq!(problem["field"], "Last-Event-ID");
}
