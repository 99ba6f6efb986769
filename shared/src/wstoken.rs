//! WebSocket tokens: what `POST /v1/users/{user}/ws-token` mints and the deliverer checks.
//!
//! A token is a JWT (HS256) bound to one app and one user, with an expiry. Each app signs with
//! its own key, derived from `deliverer.token_secret` and the app id (HMAC-SHA256), so a token
//! whose app claim was changed fails its signature, and the header's `kid` names the app.

use hmac::{Hmac, Mac};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::model::{AppId, UserId};

const ISSUER: &str = "sprayer";
const AUDIENCE: &str = "sprayer-ws";

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WsClaims {
    /// The app.
    pub app: AppId,
    /// The user.
    pub sub: UserId,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    /// Always `sprayer`.
    pub iss: String,
    /// Always `sprayer-ws`.
    pub aud: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this installation: unreadable, or its signature does not match.
    #[error("the token is not valid")]
    Invalid,
    /// The token was valid but has expired.
    #[error("the token has expired")]
    Expired,
}

fn app_key(secret: &[u8], app: &AppId) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(b"sprayer ws-token ");
    mac.update(app.as_str().as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Mints a token for `user` of `app`, valid until `expires_at` (Unix seconds).
pub fn mint(
    secret: &[u8],
    app: &AppId,
    user: &UserId,
    issued_at: i64,
    expires_at: i64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = WsClaims {
        app: app.clone(),
        sub: user.clone(),
        iat: issued_at,
        exp: expires_at,
        iss: ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(app.as_str().to_owned());
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(&app_key(secret, app)),
    )
}

/// Checks `token`: its app's signature, issuer, audience and expiry (no leeway).
pub fn verify(secret: &[u8], token: &str) -> Result<WsClaims, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
    if header.alg != Algorithm::HS256 {
        return Err(TokenError::Invalid);
    }
    let app = header
        .kid
        .and_then(|kid| AppId::parse(kid).ok())
        .ok_or(TokenError::Invalid)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<WsClaims>(
        token,
        &DecodingKey::from_secret(&app_key(secret, &app)),
        &validation,
    )
    .map_err(|error| match error.kind() {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        _ => TokenError::Invalid,
    })?;
    if data.claims.app != app {
        return Err(TokenError::Invalid);
    }
    Ok(data.claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> i64 {
        crate::model::now_ms() / 1000
    }

    fn ids() -> (AppId, UserId) {
        (
            AppId::parse("app_a").unwrap_or_else(|_| unreachable!()),
            UserId::parse("u1").unwrap_or_else(|_| unreachable!()),
        )
    }

    #[test]
    fn a_minted_token_verifies_and_names_its_app_and_user() {
        let (app, user) = ids();
        let token = mint(SECRET, &app, &user, now(), now() + 60).unwrap_or_default();
        let claims = verify(SECRET, &token).ok();
        assert_eq!(
            claims.map(|claims| (claims.app, claims.sub)),
            Some((app, user))
        );
    }

    #[test]
    fn expired_forged_and_foreign_tokens_are_refused() {
        let (app, user) = ids();
        let expired = mint(SECRET, &app, &user, now() - 120, now() - 60).unwrap_or_default();
        assert_eq!(verify(SECRET, &expired), Err(TokenError::Expired));
        let other_secret = mint(
            b"another secret of thirty-two bytes!",
            &app,
            &user,
            now(),
            now() + 60,
        )
        .unwrap_or_default();
        assert_eq!(verify(SECRET, &other_secret), Err(TokenError::Invalid));
        assert_eq!(verify(SECRET, "not a token"), Err(TokenError::Invalid));
        // The payload of one app's token under another app's header: the key differs.
        let token = mint(SECRET, &app, &user, now(), now() + 60).unwrap_or_default();
        let other = AppId::parse("app_b").unwrap_or_else(|_| unreachable!());
        let foreign = mint(SECRET, &other, &user, now(), now() + 60).unwrap_or_default();
        let spliced = format!(
            "{}.{}",
            foreign.split('.').next().unwrap_or_default(),
            token
                .split_once('.')
                .map(|(_, rest)| rest)
                .unwrap_or_default()
        );
        assert_eq!(verify(SECRET, &spliced), Err(TokenError::Invalid));
    }
}
