//! Apps and their API keys: creation, rotation (two live keys), and authentication of callers.
//!
//! A key reads `spr_<key id>_<secret>`. MongoDB keeps the key id and the SHA-256 of the secret;
//! a caller's secret is hashed and compared in constant time. Verified keys are cached for
//! `accepter.key_cache_ttl`, so a revoked key stops working within that time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::TryStreamExt;
use mongodb::bson::{self, doc};
use sha2::{Digest, Sha256};
use sprayer_shared::model::{AppId, Channel, Providers};
use sprayer_shared::mongo::{AppDoc, Mongo, StoredKey};
use subtle::ConstantTimeEq;

/// Most keys an app holds at once: the current one and the one replacing it.
pub const MAX_LIVE_KEYS: usize = 2;

/// What can go wrong managing apps.
#[derive(Debug, thiserror::Error)]
pub enum AppsError {
    /// MongoDB failed.
    #[error("mongodb: {0}")]
    Store(#[from] mongodb::error::Error),
    /// No such app.
    #[error("no app {0}")]
    UnknownApp(String),
    /// No such key on the app.
    #[error("app {app} has no key {key_id}")]
    UnknownKey {
        /// The app.
        app: String,
        /// The key id asked for.
        key_id: String,
    },
    /// The app already has [`MAX_LIVE_KEYS`] keys.
    #[error("app already has {MAX_LIVE_KEYS} keys; revoke one first")]
    TooManyKeys,
    /// The app's last key cannot be revoked.
    #[error("an app keeps at least one key; add the new key before revoking the old")]
    LastKey,
    /// The name is empty or too long.
    #[error("an app name is 1 to 100 characters")]
    BadName,
}

/// Why a caller was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The key does not read `spr_<id>_<secret>`, or no app holds it.
    #[error("the key is not valid")]
    Invalid,
    /// MongoDB could not be asked.
    #[error("mongodb: {0}")]
    Store(#[from] mongodb::error::Error),
}

/// A freshly made key: shown once, stored only as a hash.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The full key, for the caller to keep.
    pub key: String,
    /// What is stored.
    pub stored: StoredKey,
}

/// Makes a new random key.
pub fn generate_key() -> NewKey {
    let key_id = format!("{:016x}", rand::random::<u64>());
    let secret = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    NewKey {
        key: format!("spr_{key_id}_{secret}"),
        stored: StoredKey {
            id: key_id,
            hash: hash_secret(&secret),
            created: bson::DateTime::now(),
        },
    }
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn split_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("spr_")?;
    let (key_id, secret) = rest.split_once('_')?;
    (key_id.len() == 16 && !secret.is_empty()).then_some((key_id, secret))
}

struct CachedKey {
    app: AppId,
    hash: String,
    fetched: Instant,
}

/// The app registry over MongoDB, with a short-lived cache of verified keys.
pub struct Apps {
    mongo: Mongo,
    cache_ttl: Duration,
    cache: Mutex<HashMap<String, CachedKey>>,
}

impl Apps {
    /// The registry over `mongo`.
    pub fn new(mongo: Mongo, cache_ttl: Duration) -> Apps {
        Apps {
            mongo,
            cache_ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The app that holds `key`.
    pub async fn authenticate(&self, key: &str) -> Result<AppId, AuthError> {
        let (key_id, secret) = split_key(key).ok_or(AuthError::Invalid)?;
        let presented = hash_secret(secret);
        if let Some(app) = self.cached(key_id, &presented) {
            return Ok(app);
        }
        let found = self.mongo.apps.find_one(doc! { "keys.id": key_id }).await?;
        let app_doc = found.ok_or(AuthError::Invalid)?;
        let stored = app_doc
            .keys
            .iter()
            .find(|stored| stored.id == key_id)
            .ok_or(AuthError::Invalid)?;
        if !bool::from(stored.hash.as_bytes().ct_eq(presented.as_bytes())) {
            return Err(AuthError::Invalid);
        }
        let app = AppId::parse(app_doc.id.clone()).map_err(|_| AuthError::Invalid)?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 100_000 {
                cache.clear();
            }
            cache.insert(
                key_id.to_owned(),
                CachedKey {
                    app: app.clone(),
                    hash: stored.hash.clone(),
                    fetched: Instant::now(),
                },
            );
        }
        Ok(app)
    }

    fn cached(&self, key_id: &str, presented: &str) -> Option<AppId> {
        let cache = self.cache.lock().ok()?;
        let entry = cache.get(key_id)?;
        let fresh = entry.fetched.elapsed() < self.cache_ttl;
        (fresh && bool::from(entry.hash.as_bytes().ct_eq(presented.as_bytes())))
            .then(|| entry.app.clone())
    }

    /// Creates an app with one key; returns the app and the key (shown once).
    pub async fn create(&self, name: &str) -> Result<(AppDoc, String), AppsError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(AppsError::BadName);
        }
        let key = generate_key();
        let app = AppDoc {
            id: AppId::generate().to_string(),
            name: name.to_owned(),
            keys: vec![key.stored],
            created: bson::DateTime::now(),
            providers: Providers::default(),
        };
        self.mongo.apps.insert_one(&app).await?;
        tracing::info!(app = %app.id, "app created");
        Ok((app, key.key))
    }

    /// Every app, without key hashes.
    pub async fn list(&self) -> Result<Vec<AppDoc>, AppsError> {
        let cursor = self
            .mongo
            .apps
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .await?;
        let mut apps: Vec<AppDoc> = cursor.try_collect().await?;
        for app in &mut apps {
            for key in &mut app.keys {
                key.hash.clear();
            }
        }
        Ok(apps)
    }

    /// Adds a key to `app` (at most [`MAX_LIVE_KEYS`] live); returns it (shown once).
    pub async fn add_key(&self, app: &str) -> Result<NewKey, AppsError> {
        let key = generate_key();
        let stored = bson::to_bson(&key.stored).map_err(mongodb::error::Error::from)?;
        let limit = format!("keys.{}", MAX_LIVE_KEYS - 1);
        let result = self
            .mongo
            .apps
            .update_one(
                doc! { "_id": app, &limit: { "$exists": false } },
                doc! { "$push": { "keys": stored } },
            )
            .await?;
        if result.matched_count == 0 {
            return Err(self.missing_or(app, AppsError::TooManyKeys).await?);
        }
        tracing::info!(app, key_id = %key.stored.id, "app key added");
        Ok(key)
    }

    /// Revokes one of `app`'s keys; the last key cannot be revoked.
    pub async fn revoke_key(&self, app: &str, key_id: &str) -> Result<(), AppsError> {
        let result = self
            .mongo
            .apps
            .update_one(
                doc! { "_id": app, "keys.id": key_id, "keys.1": { "$exists": true } },
                doc! { "$pull": { "keys": { "id": key_id } } },
            )
            .await?;
        if result.modified_count == 0 {
            let found = self.mongo.apps.find_one(doc! { "_id": app }).await?;
            return Err(match found {
                None => AppsError::UnknownApp(app.to_owned()),
                Some(doc) if doc.keys.iter().any(|key| key.id == key_id) => AppsError::LastKey,
                Some(_) => AppsError::UnknownKey {
                    app: app.to_owned(),
                    key_id: key_id.to_owned(),
                },
            });
        }
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(key_id);
        }
        tracing::info!(app, key_id, "app key revoked");
        Ok(())
    }

    /// Sets the provider settings of `channel` for `app` (already checked).
    pub async fn set_provider(
        &self,
        app: &str,
        channel: Channel,
        settings: serde_json::Value,
    ) -> Result<(), AppsError> {
        let value = bson::to_bson(&settings).map_err(mongodb::error::Error::from)?;
        let field = format!("providers.{channel}");
        let result = self
            .mongo
            .apps
            .update_one(doc! { "_id": app }, doc! { "$set": { field: value } })
            .await?;
        if result.matched_count == 0 {
            return Err(AppsError::UnknownApp(app.to_owned()));
        }
        tracing::info!(app, %channel, "provider settings set");
        Ok(())
    }

    /// Removes the provider settings of `channel` from `app`.
    pub async fn remove_provider(&self, app: &str, channel: Channel) -> Result<(), AppsError> {
        let field = format!("providers.{channel}");
        let result = self
            .mongo
            .apps
            .update_one(doc! { "_id": app }, doc! { "$unset": { field: "" } })
            .await?;
        if result.matched_count == 0 {
            return Err(AppsError::UnknownApp(app.to_owned()));
        }
        Ok(())
    }

    /// The provider settings of `app`, redacted.
    pub async fn providers(&self, app: &str) -> Result<serde_json::Value, AppsError> {
        let found = self.mongo.apps.find_one(doc! { "_id": app }).await?;
        let app_doc = found.ok_or_else(|| AppsError::UnknownApp(app.to_owned()))?;
        Ok(app_doc.providers.redacted())
    }

    async fn missing_or(&self, app: &str, otherwise: AppsError) -> Result<AppsError, AppsError> {
        let exists = self
            .mongo
            .apps
            .find_one(doc! { "_id": app })
            .await?
            .is_some();
        Ok(if exists {
            otherwise
        } else {
            AppsError::UnknownApp(app.to_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_into_id_and_secret_and_hash_stably() {
        let key = generate_key();
        let (key_id, secret) = split_key(&key.key).expect("well-formed");
        assert_eq!(key_id, key.stored.id);
        assert_eq!(hash_secret(secret), key.stored.hash);
        assert!(split_key("spr_short_x").is_none());
        assert!(split_key("bearer-token").is_none());
    }
}
