//! Endpoint addresses: what a user registers on a channel, as stored in `ep:{app:user}:<channel>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// A webhook endpoint of the `http` channel: where to POST and the Standard Webhooks secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookAddress {
    /// An `http://` or `https://` URL.
    pub url: String,
    /// The signing secret, `whsec_` and base64 of 24 to 64 random bytes.
    pub secret: String,
}

impl std::fmt::Debug for WebhookAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookAddress")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why an address was refused, and which field of it is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct AddressError {
    /// The field of the address (`url`, `secret`).
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl WebhookAddress {
    /// Checks the URL and the secret.
    pub fn validate(&self) -> Result<(), AddressError> {
        let url = url::Url::parse(&self.url).map_err(|error| AddressError {
            field: "url",
            reason: format!("not a URL ({error})"),
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(AddressError {
                field: "url",
                reason: "must be an http:// or https:// URL with a host".into(),
            });
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(AddressError {
                field: "url",
                reason: "must not carry credentials; sign with the secret instead".into(),
            });
        }
        let key = self.signing_key().map_err(|reason| AddressError {
            field: "secret",
            reason,
        })?;
        if !(24..=64).contains(&key.len()) {
            return Err(AddressError {
                field: "secret",
                reason: "must hold 24 to 64 bytes".into(),
            });
        }
        Ok(())
    }

    /// The HMAC key: the secret's base64 part, decoded.
    pub fn signing_key(&self) -> Result<Vec<u8>, String> {
        let encoded = self
            .secret
            .strip_prefix("whsec_")
            .ok_or_else(|| "must start with whsec_".to_owned())?;
        STANDARD
            .decode(encoded)
            .map_err(|error| format!("must be whsec_ and base64 ({error})"))
    }

    /// The secret with all but its last four characters hidden, for display.
    pub fn redacted_secret(&self) -> String {
        let tail: String = self
            .secret
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("whsec_…{tail}")
    }
}

/// Whether `address` looks like `local@domain`: what an SMTP relay will take.
pub fn valid_email(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| c.is_ascii_graphic() && !"<>()[]\\,;:\"@".contains(c));
    let domain_ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    local_ok && domain_ok
}

/// An `email` endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailEndpoint {
    /// The recipient's address.
    pub address: String,
}

/// An `sms` endpoint: the phone number in E.164 (`+` and 7 to 15 digits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsEndpoint {
    /// The number, e.g. `+31612345678`.
    pub msisdn: String,
}

/// Whether `number` is E.164: `+`, a non-zero digit, 6 to 14 more digits.
pub fn valid_msisdn(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (7..=15).contains(&digits.len())
            && digits.chars().all(|c| c.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

/// An `apns` or `fcm` endpoint: the device's registration token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEndpoint {
    /// The token the device got from APNs or FCM.
    pub token: String,
}

/// A `webpush` endpoint: the browser's `PushSubscription` as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebpushEndpoint {
    /// The push service URL.
    pub endpoint: String,
    /// The subscription's keys.
    pub keys: WebpushKeys,
    /// When the subscription expires (ignored; browsers send it).
    #[serde(default, rename = "expirationTime", skip_serializing)]
    pub expiration_time: Option<serde_json::Value>,
}

/// A push subscription's keys, base64url.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebpushKeys {
    /// The browser's P-256 public key (65 bytes, uncompressed).
    pub p256dh: String,
    /// The authentication secret (16 bytes).
    pub auth: String,
}

fn decoded_length(text: &str) -> Option<usize> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
        .map(|bytes| bytes.len())
}

fn check<T>(ok: bool, field: &'static str, reason: &str, value: T) -> Result<T, AddressError> {
    if ok {
        Ok(value)
    } else {
        Err(AddressError {
            field,
            reason: reason.to_owned(),
        })
    }
}

/// A `ws` endpoint: an empty object. It opens the user's inbox; every browser of the user
/// connects with a token and receives what the inbox holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsEndpoint {}

/// Checks a JSON address for `channel` and returns the text stored in Redis.
pub fn parse_address(channel: super::Channel, raw: &[u8]) -> Result<String, AddressError> {
    use super::Channel;
    let decode_error = |error: serde_json::Error| AddressError {
        field: "/",
        reason: error.to_string(),
    };
    let stored = match channel {
        Channel::Http => {
            let address: WebhookAddress = serde_json::from_slice(raw).map_err(decode_error)?;
            address.validate()?;
            serde_json::to_string(&address)
        }
        Channel::Email => {
            let email: EmailEndpoint = serde_json::from_slice(raw).map_err(decode_error)?;
            let email = check(
                valid_email(&email.address),
                "address",
                "must be an e-mail address",
                email,
            )?;
            serde_json::to_string(&email)
        }
        Channel::Sms => {
            let sms: SmsEndpoint = serde_json::from_slice(raw).map_err(decode_error)?;
            let sms = check(
                valid_msisdn(&sms.msisdn),
                "msisdn",
                "must be an E.164 number such as +31612345678",
                sms,
            )?;
            serde_json::to_string(&sms)
        }
        Channel::Apns => {
            let token: TokenEndpoint = serde_json::from_slice(raw).map_err(decode_error)?;
            let ok = (64..=200).contains(&token.token.len())
                && token.token.chars().all(|c| c.is_ascii_hexdigit());
            let token = check(
                ok,
                "token",
                "must be the device token in hex (64 digits or more)",
                token,
            )?;
            serde_json::to_string(&token)
        }
        Channel::Fcm => {
            let token: TokenEndpoint = serde_json::from_slice(raw).map_err(decode_error)?;
            let ok = (1..=4096).contains(&token.token.len())
                && token
                    .token
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_:.".contains(c));
            let token = check(ok, "token", "must be an FCM registration token", token)?;
            serde_json::to_string(&token)
        }
        Channel::Webpush => {
            let subscription: WebpushEndpoint =
                serde_json::from_slice(raw).map_err(decode_error)?;
            let https = url::Url::parse(&subscription.endpoint)
                .is_ok_and(|url| matches!(url.scheme(), "https" | "http"));
            let subscription = check(
                https,
                "endpoint",
                "must be the push service URL",
                subscription,
            )?;
            let subscription = check(
                decoded_length(&subscription.keys.p256dh) == Some(65),
                "keys/p256dh",
                "must be base64url of a 65-byte P-256 public key",
                subscription,
            )?;
            let subscription = check(
                decoded_length(&subscription.keys.auth) == Some(16),
                "keys/auth",
                "must be base64url of 16 bytes",
                subscription,
            )?;
            serde_json::to_string(&subscription)
        }
        Channel::Ws => {
            // serde reads a field-less struct from `[]` too: only `{}` is an inbox address.
            let value: serde_json::Value = serde_json::from_slice(raw).map_err(decode_error)?;
            if !value.is_object() {
                return Err(AddressError {
                    field: "/",
                    reason: "must be an empty object {}".into(),
                });
            }
            let inbox: WsEndpoint = serde_json::from_value(value).map_err(decode_error)?;
            serde_json::to_string(&inbox)
        }
    };
    stored.map_err(decode_error)
}

/// A stored address with its secrets hidden, for listing.
pub fn redacted_address(channel: super::Channel, stored: &str) -> serde_json::Value {
    use super::Channel;
    match channel {
        Channel::Http => match serde_json::from_str::<WebhookAddress>(stored) {
            Ok(address) => {
                serde_json::json!({ "url": address.url, "secret": address.redacted_secret() })
            }
            Err(_) => serde_json::json!({}),
        },
        Channel::Webpush => match serde_json::from_str::<WebpushEndpoint>(stored) {
            Ok(subscription) => serde_json::json!({ "endpoint": subscription.endpoint }),
            Err(_) => serde_json::json!({}),
        },
        _ => serde_json::from_str(stored).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(url: &str, secret: &str) -> WebhookAddress {
        WebhookAddress {
            url: url.into(),
            secret: secret.into(),
        }
    }

    #[test]
    fn webhook_addresses_are_checked() {
        let secret = format!("whsec_{}", STANDARD.encode([7u8; 32]));
        assert!(
            address("https://example.com/hook", &secret)
                .validate()
                .is_ok()
        );
        assert_eq!(
            address("ftp://example.com", &secret)
                .validate()
                .map_err(|e| e.field),
            Err("url")
        );
        assert_eq!(
            address("not a url", &secret)
                .validate()
                .map_err(|e| e.field),
            Err("url")
        );
        assert_eq!(
            address("https://a:b@example.com", &secret)
                .validate()
                .map_err(|e| e.field),
            Err("url")
        );
        assert_eq!(
            address("https://example.com", "plain")
                .validate()
                .map_err(|e| e.field),
            Err("secret")
        );
        let short = format!("whsec_{}", STANDARD.encode([7u8; 8]));
        assert_eq!(
            address("https://example.com", &short)
                .validate()
                .map_err(|e| e.field),
            Err("secret")
        );
        assert!(!format!("{:?}", address("https://example.com", &secret)).contains(&secret));
    }

    #[test]
    fn a_ws_address_is_an_empty_object_and_nothing_else() {
        assert_eq!(
            parse_address(crate::model::Channel::Ws, b"{}").expect("an inbox"),
            "{}"
        );
        for refused in [&b"[]"[..], b"null", b"1", br#"{"x":1}"#] {
            assert!(
                parse_address(crate::model::Channel::Ws, refused).is_err(),
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
    }
}
