//! Scenario `personal`: the fan-out of scenario 2 over `http` to 100,000 users, plain, and
//! again with a template in two locales (a fifth of the users read French), a category and
//! per-user preferences (10 % opted out of the category). Three rounds of each, alternated;
//! the figure is the median rate of each and their ratio (goal: personal ≥ 0.8 × plain).
//! The rate is recipients decided per second: the time from the POST to the last delivery at
//! the sink, once the summary counts every recipient delivered or skipped.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use crate::fanout;
use crate::platform::Platform;
use crate::sink::Sink;

/// Longest wait for one round.
const LONGEST: Duration = Duration::from_secs(180);
/// Rounds of each kind.
const ROUNDS: usize = 3;

async fn put(platform: &Platform, path: String, body: Value) -> anyhow::Result<()> {
    platform
        .http
        .put(format!("{}{path}", platform.api))
        .bearer_auth(&platform.key)
        .json(&body)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// The template, the category, and the profiles and preferences of `users` users.
async fn setup(platform: &Platform, users: usize) -> anyhow::Result<usize> {
    let started = Instant::now();
    put(
        platform,
        "/v1/categories/marketing".into(),
        json!({"description": "offers"}),
    )
    .await?;
    put(
        platform,
        "/v1/templates/offer".into(),
        json!({
            "default_locale": "en",
            "schema": {"type": "object", "required": ["percent"],
                       "properties": {"percent": {"type": "integer"}}},
            "locales": {
                "en": {"title": "{{ percent }} % off", "body": "This week only: {{ percent }} % off everything."},
                "fr": {"title": "{{ percent }} % de remise", "body": "Cette semaine : {{ percent }} % sur tout."},
            },
        }),
    )
    .await?;
    let opted_out: Vec<usize> = (0..users).step_by(10).collect();
    let french: Vec<usize> = (0..users).filter(|n| n % 5 == 1).collect();
    futures::stream::iter(&opted_out)
        .map(|n| {
            put(
                platform,
                format!("/v1/users/f{n}/preferences"),
                json!({"categories": {"marketing": {"enabled": false}}}),
            )
        })
        .buffer_unordered(32)
        .try_collect::<()>()
        .await?;
    futures::stream::iter(&french)
        .map(|n| {
            put(
                platform,
                format!("/v1/users/f{n}"),
                json!({"locale": "fr-CA"}),
            )
        })
        .buffer_unordered(32)
        .try_collect::<()>()
        .await?;
    eprintln!(
        "personal: {} opted out, {} French profiles in {:.1?}",
        opted_out.len(),
        french.len(),
        started.elapsed()
    );
    Ok(opted_out.len())
}

/// One personal round: seconds to the last delivery, once every recipient is decided.
async fn personal_round(
    platform: &Platform,
    sink: &Sink,
    users: usize,
    skipped: usize,
) -> Option<f64> {
    let sent = (users - skipped) as u64;
    let hits_before = sink.hits();
    let started = Instant::now();
    let id = platform
        .send(
            &json!({"to": {"group": "fan"}, "channels": ["http"], "template": "offer",
                      "data": {"percent": 20}, "category": "marketing"}),
        )
        .await
        .ok()?;
    let mut delivered_at = None;
    while started.elapsed() < LONGEST {
        if delivered_at.is_none() && sink.hits() >= hits_before + sent {
            delivered_at = Some(started.elapsed().as_secs_f64());
        }
        if delivered_at.is_some() {
            let summary = fanout::summary(platform, &id).await;
            let http = &summary["summary"]["http"];
            if http["delivered"].as_u64() == Some(sent)
                && http["skipped"].as_u64() == Some(skipped as u64)
            {
                eprintln!(
                    "personal: delivered in {delivered_at:?} s, feedback in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                return delivered_at;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("personal: not every recipient decided within {LONGEST:?}");
    None
}

fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// Runs the scenario with `users` group members.
pub async fn run(users: usize) -> anyhow::Result<Value> {
    let platform = Platform::start().await?;
    let sink = Sink::start().await?;
    fanout::setup(&platform, &sink, users).await?;
    // The plain rounds run before any profile exists too: the first measures a send that
    // reads no profile at all, the others one that reads them (the app has profiles then).
    let (first_plain, _) = fanout::http(&platform, &sink, users).await;
    let skipped = setup(&platform, users).await?;
    let mut plain = Vec::new();
    let mut personal = Vec::new();
    for _ in 0..ROUNDS {
        crate::settle().await;
        if let (Some(seconds), _) = fanout::http(&platform, &sink, users).await {
            plain.push(users as f64 / seconds);
        }
        crate::settle().await;
        if let Some(seconds) = personal_round(&platform, &sink, users, skipped).await {
            personal.push(users as f64 / seconds);
        }
    }
    platform.stop().await;
    let plain_rate = median(&mut plain);
    let personal_rate = median(&mut personal);
    Ok(json!({
        "users": users,
        "opted_out": skipped,
        "plain_without_profiles_per_s": first_plain.map(|seconds| users as f64 / seconds),
        "plain_per_s": plain,
        "personal_per_s": personal,
        "plain_median_per_s": plain_rate,
        "personal_median_per_s": personal_rate,
        "ratio": plain_rate.zip(personal_rate).map(|(plain, personal)| personal / plain),
        "goal_ratio": 0.8,
    }))
}
