//! Personal messages: templates with locales ([`template`]), user profiles and preferences
//! ([`profile`]), and what a dispatcher or the deliverer decides per recipient of a job that
//! carries them ([`Personalizer`]): send (rendered in the user's locale), skip on a preference
//! or in quiet hours, hold until quiet hours end, or fail when the text does not render.
//!
//! Profiles and preferences are read in pipelined batches, one round trip per
//! `lookup_batch` users; a template is compiled once per job and rendered once per locale,
//! or once per user when it reads `user.*`.

pub mod profile;
pub mod store;
pub mod template;

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{Job, Priority, QuietMode, UserId};
use crate::redis::RedisConnection;
use profile::{Preferences, Profile, profile_key};
use template::Compiled;

/// What happens to one recipient of a job.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Send this job (the original, or rendered for the user's locale).
    Send(Arc<Job>),
    /// Do not send; recorded as `skipped` with this reason (`preference`, `quiet_hours`).
    Skip(&'static str),
    /// Hold until this time (Unix ms): the user's quiet hours end then.
    Hold(i64),
    /// The text cannot be rendered for this user (a `user.*` field they lack).
    Fail(String),
}

/// A user's stored profile and preferences.
#[derive(Debug, Clone, Default)]
struct Stored {
    profile: Profile,
    preferences: Preferences,
}

/// The per-recipient decisions of one job.
pub struct Personalizer {
    job: Arc<Job>,
    compiled: Option<Compiled>,
    users: HashMap<UserId, Stored>,
    /// Rendered jobs by locale, for templates that do not read `user`.
    by_locale: HashMap<String, Arc<Job>>,
}

impl Personalizer {
    /// Reads what `job` needs about `users` (nothing for a job that is not personal). A
    /// template that no longer compiles (it was checked when stored) fails every recipient.
    pub async fn load(
        redis: &mut RedisConnection,
        job: &Job,
        users: &[UserId],
        batch: usize,
    ) -> redis::RedisResult<Personalizer> {
        let job = Arc::new(job.clone());
        let Some(personal) = job.personal.as_deref() else {
            return Ok(Personalizer {
                job,
                compiled: None,
                users: HashMap::new(),
                by_locale: HashMap::new(),
            });
        };
        let compiled = personal
            .template
            .as_ref()
            .and_then(|template| Compiled::new(&template.source).ok());
        let mut stored = HashMap::with_capacity(users.len());
        let mut unique: Vec<&UserId> = users.iter().collect();
        unique.sort();
        unique.dedup();
        for chunk in unique.chunks(batch.max(1)) {
            let mut pipe = redis::pipe();
            for user in chunk {
                pipe.cmd("HMGET")
                    .arg(profile_key(&job.app, user))
                    .arg("profile")
                    .arg("preferences");
            }
            let rows: Vec<(Option<String>, Option<String>)> = pipe.query_async(redis).await?;
            for (user, (profile, preferences)) in chunk.iter().zip(rows) {
                if profile.is_none() && preferences.is_none() {
                    continue;
                }
                stored.insert(
                    (*user).clone(),
                    Stored {
                        profile: profile
                            .and_then(|json| serde_json::from_str(&json).ok())
                            .unwrap_or_default(),
                        preferences: preferences
                            .and_then(|json| serde_json::from_str(&json).ok())
                            .unwrap_or_default(),
                    },
                );
            }
        }
        Ok(Personalizer {
            job,
            compiled,
            users: stored,
            by_locale: HashMap::new(),
        })
    }

    /// What to do for `user` at `now_ms`: preferences first, then quiet hours, then the text.
    pub fn decide(&mut self, user: &UserId, now_ms: i64) -> Decision {
        let Some(personal) = self.job.personal.as_deref() else {
            return Decision::Send(self.job.clone());
        };
        let stored = self.users.get(user);
        if let Some(stored) = stored
            && !stored
                .preferences
                .allows(personal.category.as_ref(), self.job.channel)
        {
            return Decision::Skip("preference");
        }
        let quiet = stored.and_then(|stored| {
            let hours = stored.profile.quiet_hours.as_ref()?;
            hours.until(stored.profile.zone(), now_ms)
        });
        if let Some(until) = quiet
            && self.job.priority != Priority::Critical
        {
            match personal.quiet_hours {
                QuietMode::Ignore => {}
                QuietMode::Drop => return Decision::Skip("quiet_hours"),
                QuietMode::Defer => return Decision::Hold(until),
            }
        }
        let Some(template) = &personal.template else {
            return Decision::Send(self.job.clone());
        };
        let Some(compiled) = &self.compiled else {
            return Decision::Fail(format!(
                "template {} version {} does not compile",
                template.name, template.version
            ));
        };
        let profile = stored.map(|stored| &stored.profile);
        let locale = compiled
            .pick_locale(&[
                template.locale.as_deref(),
                profile.and_then(|profile| profile.locale.as_deref()),
            ])
            .to_owned();
        if !compiled.uses_user()
            && let Some(job) = self.by_locale.get(&locale)
        {
            return Decision::Send(job.clone());
        }
        let user_value = compiled
            .uses_user()
            .then(|| profile.cloned().unwrap_or_default().template_user(user));
        match compiled.render(
            &locale,
            self.job.channel,
            &template.data,
            user_value.as_ref(),
        ) {
            Ok(rendered) => {
                let mut job = Job::clone(&self.job);
                job.content.title = rendered.title;
                job.content.body = rendered.body;
                job.overrides = rendered.overrides;
                let job = Arc::new(job);
                if !compiled.uses_user() {
                    self.by_locale.insert(locale, job.clone());
                }
                Decision::Send(job)
            }
            Err(error) => Decision::Fail(format!("template {}: {error}", template.name)),
        }
    }
}
