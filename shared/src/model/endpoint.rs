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
}
