//! The apps' provider settings, read from MongoDB and kept for a short while, so that a job costs
//! no database round trip and a credential change takes effect within `PROVIDER_CACHE_TTL`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::doc;
use sprayer_shared::model::{AppId, Providers};
use sprayer_shared::mongo::Mongo;

/// How long an app's provider settings are trusted before they are read again.
pub const PROVIDER_CACHE_TTL: Duration = Duration::from_secs(30);

/// The provider settings of apps, cached.
pub struct ProviderCache {
    mongo: Mongo,
    entries: Mutex<HashMap<AppId, (Instant, Arc<Providers>)>>,
}

impl ProviderCache {
    /// A cache over `mongo`.
    pub fn new(mongo: Mongo) -> ProviderCache {
        ProviderCache {
            mongo,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The provider settings of `app` (empty when the app is unknown).
    pub async fn get(&self, app: &AppId) -> Result<Arc<Providers>, mongodb::error::Error> {
        if let Some(providers) = self.fresh(app) {
            return Ok(providers);
        }
        let found = self
            .mongo
            .apps
            .find_one(doc! { "_id": app.as_str() })
            .await?;
        let providers = Arc::new(found.map(|app| app.providers).unwrap_or_default());
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.insert(app.clone(), (Instant::now(), providers.clone()));
        Ok(providers)
    }

    fn fresh(&self, app: &AppId) -> Option<Arc<Providers>> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (fetched, providers) = entries.get(app)?;
        (fetched.elapsed() < PROVIDER_CACHE_TTL).then(|| providers.clone())
    }
}
