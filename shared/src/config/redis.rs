//! `[redis]`: the Redis connection and key layout.

use serde::{Deserialize, Serialize};

use super::TlsFiles;

/// Redis connection and key layout.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// The server URL; with `cluster`, the URLs of some or all of the cluster's nodes (seeds)
    /// separated by commas: the first that answers gives the cluster's layout.
    pub url: String,
    /// `true` for a Redis Cluster: commands go to the node of their hash slot, pipelines are
    /// split by slot, and pub/sub listens on one seed node at a time.
    pub cluster: bool,
    /// Shards per group and channel; must not change while groups exist.
    pub group_shards: u16,
    /// A PEM file of the certificate authorities that signed the servers' certificates, for
    /// `rediss://` URLs: trusted instead of the system's (a private CA, as managed Redis with
    /// in-transit encryption often has). Without it, `rediss://` checks against the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// A PEM client certificate (with its chain) for `rediss://` servers that ask for one
    /// (mutual TLS, `tls-auth-clients yes`); with `key_file`.
    pub cert_file: Option<std::path::PathBuf>,
    /// The PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<std::path::PathBuf>,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            cluster: false,
            group_shards: 64,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

impl RedisSettings {
    /// The server URLs of `url`: the URL as it is for one server; for a cluster, the seed
    /// nodes separated by commas (a comma inside a password is written `%2C`), blanks around
    /// each ignored.
    pub fn server_urls(&self) -> Vec<&str> {
        if self.cluster {
            self.url
                .split(',')
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .collect()
        } else {
            vec![self.url.as_str()]
        }
    }

    /// The TLS files toward `rediss://` servers.
    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles::client(
            "redis",
            self.ca_file.as_deref(),
            self.cert_file.as_deref(),
            self.key_file.as_deref(),
        )
    }

    /// What is wrong with `url`: for one server, a URL that is not Redis's or a list of
    /// several; for a cluster, no seed, or a seed that is not a `redis://` or `rediss://` URL,
    /// names a database other than 0 or other credentials than the first (named by its place
    /// in the list, never shown: it may hold a password).
    pub(super) fn url_problems(&self) -> Vec<String> {
        let tls = self.tls_files();
        if tls.any()
            && !self
                .server_urls()
                .iter()
                .any(|url| url.starts_with("rediss://"))
        {
            return vec![
                "redis.ca_file, redis.cert_file and redis.key_file are for rediss:// (TLS) servers, and redis.url names none".to_owned(),
            ];
        }
        let problems = tls.problems();
        if !problems.is_empty() {
            return problems;
        }
        if !self.cluster {
            // A comma may stand in a password: only a second URL makes a list.
            let listed = self
                .url
                .split(',')
                .filter(|url| url.trim().starts_with("redis"));
            if listed.count() > 1 {
                return vec![
                    "redis.url lists several servers: set redis.cluster = true for a Redis Cluster, or name one server".to_owned(),
                ];
            }
            if !self.url.starts_with("redis") {
                return vec!["redis.url must be a redis:// or rediss:// URL".to_owned()];
            }
            return Vec::new();
        }
        let urls = self.server_urls();
        if urls.is_empty() {
            return vec![
                "redis.url must name at least one redis:// or rediss:// URL of the cluster"
                    .to_owned(),
            ];
        }
        let place = |index: usize| format!("redis.url: address {} of {}", index + 1, urls.len());
        let mut problems = Vec::new();
        let mut credentials = None;
        for (index, text) in urls.iter().enumerate() {
            let parsed = url::Url::parse(text).ok().filter(|parsed| {
                matches!(parsed.scheme(), "redis" | "rediss") && parsed.host_str().is_some()
            });
            let Some(parsed) = parsed else {
                problems.push(format!(
                    "{} is not a redis:// or rediss:// URL with a host",
                    place(index)
                ));
                continue;
            };
            if !matches!(parsed.path(), "" | "/" | "/0") {
                problems.push(format!(
                    "{} names a database: a Redis Cluster has database 0 only",
                    place(index)
                ));
            }
            let these = (
                parsed.username().to_owned(),
                parsed.password().map(str::to_owned),
            );
            match &credentials {
                None => credentials = Some(these),
                Some(first) if *first != these => problems.push(format!(
                    "{} has other credentials than the first: every node of a cluster takes the same",
                    place(index)
                )),
                Some(_) => {}
            }
        }
        problems
    }
}
