//! Provider settings and credentials of an app, one per channel that needs them. They are
//! stored with the app in MongoDB, set through the admin API or CLI, and shown only redacted.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{AddressError, Channel};

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (only for a relay on the same host or network).
    None,
    /// Plain text upgraded with STARTTLS (port 587).
    #[default]
    Starttls,
    /// TLS from the start (port 465).
    Tls,
}

/// The `email` channel: the app's SMTP relay.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailProvider {
    /// The relay's host name.
    pub host: String,
    /// The relay's port (587 for STARTTLS, 465 for TLS, 25 without).
    pub port: u16,
    /// How the connection is secured.
    #[serde(default)]
    pub tls: SmtpTls,
    /// SMTP user name, if the relay asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// SMTP password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The `From` mailbox, e.g. `Shop <no-reply@shop.example>`.
    pub from: String,
}

/// Apple's push environments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApnsEnvironment {
    /// `https://api.push.apple.com`.
    #[default]
    Production,
    /// `https://api.sandbox.push.apple.com`.
    Sandbox,
}

/// The `apns` channel: token-based (.p8) credentials.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsProvider {
    /// Token authentication: the Apple developer team id (10 characters).
    #[serde(default)]
    pub team_id: String,
    /// Token authentication: the key id of the .p8 key (10 characters).
    #[serde(default)]
    pub key_id: String,
    /// Token authentication: the .p8 key, a PKCS#8 PEM of an EC P-256 private key.
    #[serde(default)]
    pub private_key: String,
    /// Certificate authentication instead of a token: the push certificate and its private key
    /// in PEM (`openssl pkcs12 -in cert.p12 -nodes` gives both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// The app's bundle id, sent as `apns-topic`.
    pub topic: String,
    /// Production or sandbox.
    #[serde(default)]
    pub environment: ApnsEnvironment,
    /// Another base URL than the environment's (a gateway or a test peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
}

impl ApnsProvider {
    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        match (&self.base_url, self.environment) {
            (Some(url), _) => url.trim_end_matches('/'),
            (None, ApnsEnvironment::Production) => "https://api.push.apple.com",
            (None, ApnsEnvironment::Sandbox) => "https://api.sandbox.push.apple.com",
        }
    }
}

/// The `fcm` channel: a Google service account allowed to send for the project.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmProvider {
    /// The service account key file (JSON) as Google issues it.
    pub service_account: Value,
    /// The Firebase project; the key's `project_id` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Another base URL than `https://fcm.googleapis.com` (a test peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
}

impl FcmProvider {
    /// The project messages are sent for.
    pub fn project(&self) -> Option<&str> {
        self.project_id.as_deref().or_else(|| {
            self.service_account
                .get("project_id")
                .and_then(Value::as_str)
        })
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        self.base_url
            .as_deref()
            .map_or("https://fcm.googleapis.com", |url| {
                url.trim_end_matches('/')
            })
    }
}

/// The `webpush` channel: the app's VAPID key pair.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebpushProvider {
    /// The VAPID private key: base64url of the raw 32-byte P-256 scalar.
    pub private_key: String,
    /// Who runs the application server: `mailto:` or `https:` URL.
    pub subject: String,
}

/// The `sms` channel: the app's SMPP account at its SMSC.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsProvider {
    /// The SMSC's host name.
    pub host: String,
    /// The SMSC's port (2775 by convention).
    pub port: u16,
    /// The account's system id.
    pub system_id: String,
    /// The account's password (8 characters at most in SMPP 3.4).
    pub password: String,
    /// The `system_type` the SMSC expects, if any.
    #[serde(default)]
    pub system_type: String,
    /// The sender: a phone number (`+...`), a short code, or an alphanumeric id of up to 11 characters.
    pub source: String,
    /// Bind over TLS.
    #[serde(default)]
    pub tls: bool,
}

/// Every provider an app has set.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Providers {
    /// SMTP relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailProvider>,
    /// APNs credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apns: Option<ApnsProvider>,
    /// FCM credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fcm: Option<FcmProvider>,
    /// VAPID keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webpush: Option<WebpushProvider>,
    /// SMPP account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsProvider>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Providers({})", self.redacted())
    }
}

fn problem(field: &'static str, reason: impl Into<String>) -> AddressError {
    AddressError {
        field,
        reason: reason.into(),
    }
}

fn hidden(secret: &str) -> String {
    format!("<{} characters hidden>", secret.chars().count())
}

fn check_url(field: &'static str, url: Option<&str>) -> Result<(), AddressError> {
    if let Some(url) = url {
        let parsed =
            url::Url::parse(url).map_err(|error| problem(field, format!("not a URL ({error})")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(problem(field, "must be an http:// or https:// URL"));
        }
    }
    Ok(())
}

impl Providers {
    /// Parses and checks the settings of `channel` from JSON; returns them as stored JSON.
    pub fn parse(channel: Channel, raw: &Value) -> Result<Value, AddressError> {
        let decode_error = |error: serde_json::Error| problem("/", error.to_string());
        match channel {
            Channel::Email => {
                let email: EmailProvider =
                    serde_json::from_value(raw.clone()).map_err(decode_error)?;
                if email.host.trim().is_empty() {
                    return Err(problem("host", "must not be empty"));
                }
                if email.port == 0 {
                    return Err(problem("port", "must not be 0"));
                }
                if !valid_mailbox(&email.from) {
                    return Err(problem(
                        "from",
                        "must be a mailbox such as `Shop <no-reply@shop.example>`",
                    ));
                }
                if email.username.is_some() != email.password.is_some() {
                    return Err(problem(
                        "password",
                        "give both username and password, or neither",
                    ));
                }
                Ok(raw.clone())
            }
            Channel::Apns => {
                let apns: ApnsProvider =
                    serde_json::from_value(raw.clone()).map_err(decode_error)?;
                match &apns.certificate {
                    Some(pem) => {
                        if !pem.contains("-----BEGIN CERTIFICATE-----")
                            || !pem.contains("PRIVATE KEY-----")
                        {
                            return Err(problem(
                                "certificate",
                                "must hold the certificate and its private key in PEM",
                            ));
                        }
                        if !(apns.team_id.is_empty()
                            && apns.key_id.is_empty()
                            && apns.private_key.is_empty())
                        {
                            return Err(problem(
                                "certificate",
                                "give a certificate or a .p8 key, not both",
                            ));
                        }
                    }
                    None => {
                        if apns.team_id.len() != 10
                            || !apns.team_id.chars().all(|c| c.is_ascii_alphanumeric())
                        {
                            return Err(problem("team_id", "must be the 10-character team id"));
                        }
                        if apns.key_id.len() != 10
                            || !apns.key_id.chars().all(|c| c.is_ascii_alphanumeric())
                        {
                            return Err(problem("key_id", "must be the 10-character key id"));
                        }
                        if !apns.private_key.contains("-----BEGIN PRIVATE KEY-----") {
                            return Err(problem("private_key", "must be the .p8 file's PEM text"));
                        }
                    }
                }
                if apns.topic.trim().is_empty() {
                    return Err(problem("topic", "must be the app's bundle id"));
                }
                check_url("base_url", apns.base_url.as_deref())?;
                Ok(raw.clone())
            }
            Channel::Fcm => {
                let fcm: FcmProvider = serde_json::from_value(raw.clone()).map_err(decode_error)?;
                for field in ["client_email", "private_key", "token_uri"] {
                    if fcm
                        .service_account
                        .get(field)
                        .and_then(Value::as_str)
                        .is_none()
                    {
                        return Err(problem(
                            "service_account",
                            format!("the key file has no {field}"),
                        ));
                    }
                }
                if fcm.project().is_none() {
                    return Err(problem(
                        "project_id",
                        "give project_id or a key file that has one",
                    ));
                }
                check_url("base_url", fcm.base_url.as_deref())?;
                Ok(raw.clone())
            }
            Channel::Webpush => {
                let webpush: WebpushProvider =
                    serde_json::from_value(raw.clone()).map_err(decode_error)?;
                use base64::Engine;
                let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(webpush.private_key.trim_end_matches('='))
                    .map_err(|_| problem("private_key", "must be base64url"))?;
                if key.len() != 32 {
                    return Err(problem(
                        "private_key",
                        "must be the raw 32-byte P-256 private key",
                    ));
                }
                if !(webpush.subject.starts_with("mailto:")
                    || webpush.subject.starts_with("https://"))
                {
                    return Err(problem("subject", "must be a mailto: or https: URL"));
                }
                Ok(raw.clone())
            }
            Channel::Sms => {
                let sms: SmsProvider = serde_json::from_value(raw.clone()).map_err(decode_error)?;
                if sms.host.trim().is_empty() {
                    return Err(problem("host", "must not be empty"));
                }
                if sms.port == 0 {
                    return Err(problem("port", "must not be 0"));
                }
                if sms.system_id.is_empty() || sms.system_id.len() > 15 {
                    return Err(problem("system_id", "must be 1 to 15 characters"));
                }
                if sms.password.len() > 8 {
                    return Err(problem("password", "must be at most 8 characters"));
                }
                let source_ok = match sms.source.strip_prefix('+') {
                    Some(digits) => {
                        (1..=15).contains(&digits.len())
                            && digits.chars().all(|c| c.is_ascii_digit())
                    }
                    None => {
                        (1..=11).contains(&sms.source.len())
                            && sms
                                .source
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == ' ')
                    }
                };
                if !source_ok {
                    return Err(problem(
                        "source",
                        "must be +digits, a short code or up to 11 letters and digits",
                    ));
                }
                Ok(raw.clone())
            }
            other => Err(problem(
                "channel",
                format!("channel {other} takes no provider settings"),
            )),
        }
    }

    /// The providers with every secret hidden, for display.
    pub fn redacted(&self) -> Value {
        let mut shown = serde_json::Map::new();
        if let Some(email) = &self.email {
            shown.insert(
                "email".into(),
                json!({ "host": email.host, "port": email.port, "tls": email.tls, "username": email.username,
                        "password": email.password.as_deref().map(hidden), "from": email.from }),
            );
        }
        if let Some(apns) = &self.apns {
            shown.insert(
                "apns".into(),
                json!({ "team_id": apns.team_id, "key_id": apns.key_id, "private_key": hidden(&apns.private_key),
                        "certificate": apns.certificate.as_deref().map(hidden),
                        "topic": apns.topic, "environment": apns.environment, "base_url": apns.base_url }),
            );
        }
        if let Some(fcm) = &self.fcm {
            let account = fcm
                .service_account
                .get("client_email")
                .cloned()
                .unwrap_or(Value::Null);
            shown.insert(
                "fcm".into(),
                json!({ "service_account": { "client_email": account, "private_key": "<hidden>" },
                        "project_id": fcm.project(), "base_url": fcm.base_url }),
            );
        }
        if let Some(webpush) = &self.webpush {
            shown.insert(
                "webpush".into(),
                json!({ "private_key": hidden(&webpush.private_key), "subject": webpush.subject }),
            );
        }
        if let Some(sms) = &self.sms {
            shown.insert(
                "sms".into(),
                json!({ "host": sms.host, "port": sms.port, "system_id": sms.system_id, "password": hidden(&sms.password),
                        "system_type": sms.system_type, "source": sms.source, "tls": sms.tls }),
            );
        }
        Value::Object(shown)
    }
}

/// Whether `text` is a mailbox (`Name <local@domain>` or `local@domain`).
fn valid_mailbox(text: &str) -> bool {
    let address = match (text.rfind('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close && close == text.len() - 1 => {
            &text[open + 1..close]
        }
        (None, None) => text,
        _ => return false,
    };
    super::endpoint::valid_email(address)
}
