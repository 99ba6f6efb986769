//! User profiles (locale, time zone, attributes, quiet hours) and preferences, as stored per
//! user, and the rules that apply them: which channel of which category a user takes, and
//! whether a moment falls in their quiet hours, in their own time zone.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{AppId, CategoryUse, Channel, UserId};

/// HASH `prof:{app:user}`: field `profile` ([`Profile`] as JSON), field `preferences`
/// ([`Preferences`] as JSON). Under the user's hash tag, with the user's endpoints.
pub fn profile_key(app: &AppId, user: &UserId) -> String {
    format!("prof:{{{app}:{user}}}")
}

/// STRING `prof:{app}:any`, set once a profile or preferences are stored for one of the app's
/// users: until then, the app's messages skip reading profiles.
pub fn profiles_in_use_key(app: &AppId) -> String {
    format!("prof:{{{app}}}:any")
}

/// HASH `cat:{app}`: category key → [`Category`] as JSON.
pub fn categories_key(app: &AppId) -> String {
    format!("cat:{{{app}}}")
}

/// HASH `tpl:{app}`: template name → the stored template (version and source) as JSON.
pub fn templates_key(app: &AppId) -> String {
    format!("tpl:{{{app}}}")
}

/// A category of messages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Category {
    /// A required category (security alerts, say) reaches every user, whatever their
    /// preferences.
    #[serde(default)]
    pub required: bool,
    /// What it is for, shown to users choosing their preferences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A STOP by SMS opts the user out of this category's SMS rather than out of SMS as a
    /// whole (START opts back in); when no category of the app says so, STOP stops all SMS.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stop_by_sms: bool,
}

/// The hours a user is not to be disturbed, in their time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// When they begin, `HH:MM` (24-hour).
    pub from: String,
    /// When they end, `HH:MM`; before `from` when they run over midnight.
    pub to: String,
    /// The days (`mon` … `sun`) on which they begin; every day when left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<String>,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn clock(text: &str) -> Option<NaiveTime> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    NaiveTime::from_hms_opt(hours.parse().ok()?, minutes.parse().ok()?, 0)
}

impl QuietHours {
    /// The field that is wrong (`from`, `to`, `days/<n>`) and why.
    pub fn problem(&self) -> Option<(String, String)> {
        let from = clock(&self.from);
        let to = clock(&self.to);
        if from.is_none() {
            return Some(("from".into(), "a time of day such as 22:00".into()));
        }
        if to.is_none() {
            return Some(("to".into(), "a time of day such as 07:30".into()));
        }
        if from == to {
            return Some((
                "to".into(),
                "quiet hours must end at another time than they begin".into(),
            ));
        }
        self.days.iter().enumerate().find_map(|(index, day)| {
            (!DAYS.contains(&day.as_str())).then(|| {
                (
                    format!("days/{index}"),
                    "one of mon, tue, wed, thu, fri, sat, sun".into(),
                )
            })
        })
    }

    /// When the quiet hours around `now_ms` end (Unix ms), or `None` outside them. Local times
    /// a daylight-saving change skips are read an hour later; those it repeats, the first time.
    pub fn until(&self, zone: Tz, now_ms: i64) -> Option<i64> {
        let (from, to) = (clock(&self.from)?, clock(&self.to)?);
        let now = zone.timestamp_millis_opt(now_ms).single()?;
        let today = now.date_naive();
        for start_day in [today - Duration::days(1), today] {
            let weekday = DAYS[start_day.weekday().num_days_from_monday() as usize];
            if !self.days.is_empty() && !self.days.iter().any(|day| day == weekday) {
                continue;
            }
            let end_day = if from < to {
                start_day
            } else {
                start_day + Duration::days(1)
            };
            let start = instant(zone, start_day, from)?;
            let end = instant(zone, end_day, to)?;
            if start <= now_ms && now_ms < end {
                return Some(end);
            }
        }
        None
    }
}

/// The Unix ms of a local wall-clock time in `zone`.
fn instant(zone: Tz, day: NaiveDate, time: NaiveTime) -> Option<i64> {
    let local = NaiveDateTime::new(day, time);
    match zone.from_local_datetime(&local) {
        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => Some(at.timestamp_millis()),
        LocalResult::None => zone
            .from_local_datetime(&(local + Duration::hours(1)))
            .earliest()
            .map(|at| at.timestamp_millis()),
    }
}

/// A user's profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The user's language (BCP 47: `fr-CA`); picks a template's locale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// The user's time zone (IANA: `Europe/Paris`); quiet hours are read in it (UTC when
    /// left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Anything templates may read as `user.attributes.*`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    /// Hours not to be disturbed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
}

impl Profile {
    /// The time zone (UTC when none or not known).
    pub fn zone(&self) -> Tz {
        self.timezone
            .as_deref()
            .and_then(|name| name.parse().ok())
            .unwrap_or(Tz::UTC)
    }

    /// What templates see as `user`.
    pub fn template_user(&self, user: &UserId) -> Value {
        serde_json::json!({
            "id": user.as_str(),
            "locale": self.locale,
            "timezone": self.timezone,
            "attributes": self.attributes,
        })
    }
}

/// One category's settings in a user's preferences.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryPreference {
    /// `false`: nothing of the category on any channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Per channel (or `push`: apns, fcm and webpush together), on or off for this category.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channels: BTreeMap<String, bool>,
}

/// A user's preferences.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// Per channel (or `push`), on or off for every category.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channels: BTreeMap<String, bool>,
    /// Per category key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub categories: BTreeMap<String, CategoryPreference>,
}

/// The name that stands for every push channel in preferences.
pub const PUSH: &str = "push";

/// Whether `name` may key a channel setting: a channel, or [`PUSH`].
pub fn preference_channel(name: &str) -> bool {
    name == PUSH || name.parse::<Channel>().is_ok()
}

fn setting(settings: &BTreeMap<String, bool>, channel: Channel) -> Option<bool> {
    settings.get(channel.as_str()).copied().or_else(|| {
        matches!(channel, Channel::Apns | Channel::Fcm | Channel::Webpush)
            .then(|| settings.get(PUSH).copied())
            .flatten()
    })
}

impl Preferences {
    /// Whether a message of `category` goes to the user on `channel`: a required category
    /// always; else the category × channel setting, else the category's `enabled: false`,
    /// else the channel setting, else yes.
    pub fn allows(&self, category: Option<&CategoryUse>, channel: Channel) -> bool {
        if category.is_some_and(|category| category.required) {
            return true;
        }
        if let Some(chosen) = category.and_then(|category| self.categories.get(&category.key)) {
            if let Some(on) = setting(&chosen.channels, channel) {
                return on;
            }
            if chosen.enabled == Some(false) {
                return false;
            }
        }
        setting(&self.channels, channel).unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(zone: Tz, text: &str) -> i64 {
        let local = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").expect("a time");
        zone.from_local_datetime(&local)
            .earliest()
            .expect("exists")
            .timestamp_millis()
    }

    fn night() -> QuietHours {
        QuietHours {
            from: "22:00".into(),
            to: "07:30".into(),
            days: Vec::new(),
        }
    }

    #[test]
    fn quiet_hours_run_over_midnight_in_the_users_zone() {
        let paris: Tz = "Europe/Paris".parse().expect("a zone");
        let quiet = night();
        assert_eq!(quiet.until(paris, at(paris, "2026-06-10 21:59")), None);
        assert_eq!(
            quiet.until(paris, at(paris, "2026-06-10 23:00")),
            Some(at(paris, "2026-06-11 07:30"))
        );
        assert_eq!(
            quiet.until(paris, at(paris, "2026-06-11 03:00")),
            Some(at(paris, "2026-06-11 07:30"))
        );
        assert_eq!(quiet.until(paris, at(paris, "2026-06-11 07:30")), None);
        let weekend = QuietHours {
            days: vec!["sat".into()],
            ..night()
        };
        // 2026-06-12 is a Friday, 2026-06-13 a Saturday.
        assert_eq!(weekend.until(paris, at(paris, "2026-06-12 23:00")), None);
        assert!(
            weekend
                .until(paris, at(paris, "2026-06-14 01:00"))
                .is_some()
        );
    }

    #[test]
    fn daylight_saving_nights_end_quiet_hours_at_the_local_time() {
        let paris: Tz = "Europe/Paris".parse().expect("a zone");
        // Spring: 2026-03-29 02:00 → 03:00. The night is an hour shorter.
        let quiet = night();
        let end = quiet
            .until(paris, at(paris, "2026-03-29 01:30"))
            .expect("quiet");
        assert_eq!(end, at(paris, "2026-03-29 07:30"));
        let start = at(paris, "2026-03-28 22:00");
        assert_eq!(end - start, (9 * 60 + 30 - 60) * 60_000);
        // Autumn: 2026-10-25 03:00 → 02:00. The night is an hour longer.
        let end = quiet
            .until(paris, at(paris, "2026-10-25 05:00"))
            .expect("quiet");
        assert_eq!(
            end - at(paris, "2026-10-24 22:00"),
            (9 * 60 + 30 + 60) * 60_000
        );
        // Quiet hours that begin in the skipped hour begin at 03:00.
        let gap = QuietHours {
            from: "02:30".into(),
            to: "06:00".into(),
            days: Vec::new(),
        };
        assert_eq!(gap.until(paris, at(paris, "2026-03-29 01:59")), None);
        assert!(gap.until(paris, at(paris, "2026-03-29 03:31")).is_some());
    }

    #[test]
    fn bad_quiet_hours_name_the_field() {
        let bad = |from: &str, to: &str, days: &[&str]| {
            QuietHours {
                from: from.into(),
                to: to.into(),
                days: days.iter().map(|d| (*d).into()).collect(),
            }
            .problem()
            .map(|(field, _)| field)
        };
        assert_eq!(bad("25:00", "07:00", &[]).as_deref(), Some("from"));
        assert_eq!(bad("22:00", "7:00", &[]).as_deref(), Some("to"));
        assert_eq!(bad("22:00", "22:00", &[]).as_deref(), Some("to"));
        assert_eq!(
            bad("22:00", "07:00", &["mon", "funday"]).as_deref(),
            Some("days/1")
        );
        assert_eq!(bad("22:00", "07:00", &["sun"]), None);
    }

    #[test]
    fn preferences_follow_required_then_category_channel_then_channel() {
        let preferences: Preferences = serde_json::from_value(json!({
            "channels": {"sms": false},
            "categories": {
                "marketing": {"enabled": false},
                "billing": {"channels": {"email": true, "push": false, "sms": true}}
            }
        }))
        .expect("preferences");
        let category = |key: &str, required: bool| CategoryUse {
            key: key.into(),
            required,
        };
        assert!(!preferences.allows(None, Channel::Sms));
        assert!(preferences.allows(None, Channel::Email));
        assert!(!preferences.allows(Some(&category("marketing", false)), Channel::Email));
        assert!(preferences.allows(Some(&category("marketing", true)), Channel::Sms));
        assert!(preferences.allows(Some(&category("billing", false)), Channel::Sms));
        assert!(!preferences.allows(Some(&category("billing", false)), Channel::Fcm));
        assert!(preferences.allows(Some(&category("billing", false)), Channel::Ws));
        assert!(!preferences.allows(Some(&category("news", false)), Channel::Sms));
    }
}
