//! MongoDB: collections, documents and indexes (see the book's docs/src/internals/mongodb.md).

use std::time::Duration;

use mongodb::bson::{self, Document, doc};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use crate::config::MongoSettings;

/// An app's API key, as stored: only the hash of the secret part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    /// The public key id (the part of the key before the secret).
    pub id: String,
    /// SHA-256 of the key's secret part, hex.
    pub hash: String,
    /// When the key was made.
    pub created: bson::DateTime,
}

/// `apps`: one tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppDoc {
    /// The app id.
    #[serde(rename = "_id")]
    pub id: String,
    /// A name for people.
    pub name: String,
    /// Live keys: two during a rotation, else one.
    pub keys: Vec<StoredKey>,
    /// When the app was made.
    pub created: bson::DateTime,
    /// Provider settings and credentials per channel.
    #[serde(default)]
    pub providers: crate::model::Providers,
}

/// `messages`: one accepted message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageDoc {
    /// The message id.
    #[serde(rename = "_id")]
    pub id: String,
    /// The app.
    pub app: String,
    /// The target as given.
    pub to: bson::Bson,
    /// The channels a job went to.
    pub channels: Vec<String>,
    /// When it was accepted.
    pub created: bson::DateTime,
    /// When it expires.
    pub expires: bson::DateTime,
    /// When it is due, for a scheduled message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<bson::DateTime>,
    /// Its escalation steps, for a message sent with `delivery`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<crate::model::Step>,
    /// The app's cancellation key, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_key: Option<String>,
    /// The template it was rendered from, and its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<crate::model::TemplateVersion>,
    /// Its category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// `deliveries`: one message to one device of one user on one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryDoc {
    /// `message:channel:user:device`.
    #[serde(rename = "_id")]
    pub id: String,
    /// The app.
    pub app: String,
    /// The message.
    pub message: String,
    /// The channel.
    pub channel: String,
    /// The recipient.
    pub user: String,
    /// The recipient's device.
    pub device: String,
    /// The current status.
    pub status: String,
    /// The rank of the event that set the status.
    pub rank: i64,
    /// Attempts made.
    pub attempts: i64,
    /// The last error, if any.
    #[serde(default)]
    pub error: Option<String>,
    /// The provider's own code for the last status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// When the first event arrived.
    pub created: bson::DateTime,
    /// When the last applied event happened.
    pub updated: bson::DateTime,
}

/// The database and its collections.
#[derive(Clone, Debug)]
pub struct Mongo {
    /// The database.
    pub database: Database,
    /// `apps`.
    pub apps: Collection<AppDoc>,
    /// `messages`.
    pub messages: Collection<MessageDoc>,
    /// `deliveries`.
    pub deliveries: Collection<DeliveryDoc>,
}

impl Mongo {
    /// Connects (lazily: the driver dials on first use) to the configured database.
    pub async fn connect(settings: &MongoSettings) -> mongodb::error::Result<Mongo> {
        let mut options = ClientOptions::parse(&settings.url).await?;
        options.app_name = Some("sprayer".into());
        options
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(5));
        options
            .connect_timeout
            .get_or_insert(Duration::from_secs(5));
        let client = Client::with_options(options)?;
        let database = client.database(&settings.database);
        Ok(Mongo {
            apps: database.collection("apps"),
            messages: database.collection("messages"),
            deliveries: database.collection("deliveries"),
            database,
        })
    }

    /// Answers whether the server responds.
    pub async fn ping(&self) -> mongodb::error::Result<()> {
        self.database
            .run_command(doc! { "ping": 1 })
            .await
            .map(|_| ())
    }

    /// Creates the indexes every reader and writer relies on; safe to call at every start.
    pub async fn ensure_indexes(&self, retention: Duration) -> mongodb::error::Result<()> {
        let named = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_owned()).build())
                .build()
        };
        let expiring = |name: &str| {
            IndexModel::builder()
                .keys(doc! { "created": 1 })
                .options(
                    IndexOptions::builder()
                        .name(name.to_owned())
                        .expire_after(retention)
                        .build(),
                )
                .build()
        };
        self.messages
            .create_index(named(doc! { "app": 1, "created": 1 }, "app_created"))
            .await?;
        self.messages.create_index(expiring("retention")).await?;
        self.deliveries
            .create_index(named(
                doc! { "app": 1, "message": 1, "status": 1 },
                "app_message_status",
            ))
            .await?;
        self.deliveries
            .create_index(named(
                doc! { "app": 1, "user": 1, "updated": 1 },
                "app_user_updated",
            ))
            .await?;
        // The admin stats count recent outcomes by the time of their status.
        self.deliveries
            .create_index(named(doc! { "updated": 1 }, "updated"))
            .await?;
        self.deliveries.create_index(expiring("retention")).await?;
        // Escalation steps that did not run, read per message and user.
        let steps = self.database.collection::<Document>("steps");
        steps
            .create_index(named(
                doc! { "app": 1, "message": 1, "user": 1, "step": 1 },
                "app_message_user_step",
            ))
            .await?;
        steps.create_index(expiring("retention")).await?;
        Ok(())
    }
}

/// A write MongoDB did not take.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The command failed.
    #[error("mongodb: {0}")]
    Store(#[from] mongodb::error::Error),
    /// A statement failed for a reason other than a duplicate key.
    #[error("mongodb refused a statement (code {code}): {message}")]
    Statement {
        /// The server's error code.
        code: i32,
        /// The server's message.
        message: String,
    },
}

/// What [`insert_new`] did.
#[derive(Debug, Default)]
pub struct Inserted {
    /// The indexes of the documents whose `_id` existed already (E11000), left alone.
    pub existing: Vec<usize>,
    /// The `insert` commands sent.
    pub commands: usize,
}

/// Documents per `insert` command.
const INSERTS_PER_COMMAND: usize = 10_000;
const DUPLICATE_KEY: i32 = 11_000;

/// Inserts `documents` into `collection` (`insert_many`, unordered, 10,000 a command), leaving
/// alone those whose `_id` exists already; any other refusal is an error.
pub async fn insert_new(
    collection: &Collection<Document>,
    documents: Vec<Document>,
) -> Result<Inserted, WriteError> {
    use mongodb::error::ErrorKind;
    let mut inserted = Inserted::default();
    let mut documents = documents.into_iter().peekable();
    while documents.peek().is_some() {
        let chunk: Vec<Document> = documents.by_ref().take(INSERTS_PER_COMMAND).collect();
        let first = inserted.commands * INSERTS_PER_COMMAND;
        inserted.commands += 1;
        if let Err(error) = collection.insert_many(chunk).ordered(false).await {
            let ErrorKind::InsertMany(failure) = error.kind.as_ref() else {
                return Err(error.into());
            };
            if let Some(concern) = &failure.write_concern_error {
                return Err(WriteError::Statement {
                    code: concern.code,
                    message: concern.message.clone(),
                });
            }
            for failed in failure.write_errors.iter().flatten() {
                if failed.code != DUPLICATE_KEY {
                    return Err(WriteError::Statement {
                        code: failed.code,
                        message: failed.message.clone(),
                    });
                }
                inserted.existing.push(first + failed.index);
            }
        }
    }
    Ok(inserted)
}

/// Whether `error` is a duplicate-key error (E11000).
pub fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write)) => write.code == 11000,
        ErrorKind::Command(command) => command.code == 11000,
        ErrorKind::InsertMany(insert) => insert
            .write_errors
            .as_ref()
            .is_some_and(|errors| errors.iter().any(|write| write.code == 11000)),
        _ => false,
    }
}

/// Milliseconds since the Unix epoch as a BSON date.
pub fn date(ms: i64) -> bson::DateTime {
    bson::DateTime::from_millis(ms)
}
