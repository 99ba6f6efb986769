//! Standard Webhooks signatures: `webhook-id`, `webhook-timestamp` and `webhook-signature`
//! (`v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` under each key, space-separated
//! when a rotation leaves two keys signing), for the webhook channel and event endpoints alike.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use sha2::Sha256;

/// The three Standard Webhooks headers and the content type, signed under every key of `keys`;
/// `None` when an id or a key cannot be used.
pub fn signed_headers(id: &str, timestamp: i64, body: &[u8], keys: &[&[u8]]) -> Option<HeaderMap> {
    let mut signatures = Vec::with_capacity(keys.len());
    for key in keys {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        signatures.push(format!(
            "v1,{}",
            STANDARD.encode(mac.finalize().into_bytes())
        ));
    }
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert("webhook-id", HeaderValue::from_str(id).ok()?);
    headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
    headers.insert(
        "webhook-signature",
        HeaderValue::from_str(&signatures.join(" ")).ok()?,
    );
    Some(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_example() {
        // The worked example published with the Standard Webhooks specification.
        let key = STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("base64");
        let body = br#"{"test": 2432232314}"#;
        let headers = signed_headers("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body, &[&key])
            .expect("headers");
        assert_eq!(
            headers["webhook-signature"],
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(headers["webhook-id"], "msg_p5jXN8AQM9LWM0D4loKWxJek");
        assert_eq!(headers["webhook-timestamp"], "1614265330");
    }

    #[test]
    fn two_keys_sign_side_by_side() {
        let headers = signed_headers("msg_1", 1_700_000_000, b"{}", &[b"new-key", b"old-key"])
            .expect("headers");
        let signature = headers["webhook-signature"].to_str().expect("ascii");
        let parts: Vec<&str> = signature.split(' ').collect();
        assert_eq!(parts.len(), 2);
        let alone = signed_headers("msg_1", 1_700_000_000, b"{}", &[b"old-key"]).expect("headers");
        assert_eq!(
            parts[1],
            alone["webhook-signature"].to_str().expect("ascii")
        );
    }
}
