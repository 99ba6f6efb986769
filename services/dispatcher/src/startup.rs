//! Building and running one dispatcher: one channel, one consumer loop, optional ops endpoints.

use std::sync::Arc;

use sprayer_shared::Settings;
use sprayer_shared::amqp::{Brokers, Publisher, Topology};
use sprayer_shared::model::Channel;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::channels::Sender;
use crate::channels::webhook::{WebhookClientError, Webhooks};
use crate::dispatch::Dispatch;

/// Why a dispatcher could not start.
pub type StartError = sprayer_shared::StartError<ChannelError>;

/// What only a dispatcher can fail at when it starts: its channel's client.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The webhook client could not be set up.
    #[error("{0}")]
    Client(#[from] WebhookClientError),
    /// The push client could not be set up.
    #[error("{0}")]
    Push(#[from] crate::channels::PushClientError),
    /// The channel has no dispatcher yet.
    #[error("channel {0} has no dispatcher in this version")]
    Unsupported(Channel),
}

/// A built dispatcher.
pub struct Dispatcher {
    dispatch: Arc<Dispatch>,
}

impl Dispatcher {
    /// Sets up the dispatcher of `channel`.
    pub async fn build(settings: Settings, channel: Channel) -> Result<Dispatcher, StartError> {
        let settings = Arc::new(settings);
        let redis = sprayer_shared::redis::connect(&settings.redis).await?;
        let mongo = sprayer_shared::mongo::Mongo::connect(&settings.mongodb).await?;
        let publisher = Arc::new(Publisher::with_brokers(
            Brokers::for_settings(&settings.amqp)?,
            Topology::new(&settings.amqp),
        ));
        let push_client = || {
            crate::channels::push_client(&settings.push)
                .map_err(|error| StartError::Service(error.into()))
        };
        let sender: Arc<dyn Sender> = match channel {
            Channel::Http => Arc::new(
                Webhooks::new(&settings.webhook)
                    .map_err(|error| StartError::Service(error.into()))?,
            ),
            Channel::Email => Arc::new(crate::channels::email::Mailer::default()),
            Channel::Apns => Arc::new(crate::channels::apns::Apns::new(
                push_client()?,
                settings.push.clone(),
            )),
            Channel::Fcm => Arc::new(crate::channels::fcm::Fcm::new(push_client()?)),
            Channel::Webpush => Arc::new(crate::channels::webpush::WebPush::new(push_client()?)),
            Channel::Sms => Arc::new(crate::channels::sms::Sms::new(
                settings.sms.clone(),
                redis.clone(),
                publisher.clone(),
            )),
            other => return Err(StartError::Service(ChannelError::Unsupported(other))),
        };
        let events = sprayer_shared::amqp::committer::event_committer(
            publisher.clone(),
            settings.dispatcher.status_batch,
            settings.dispatcher.status_linger,
            usize::from(settings.amqp.prefetch),
        );
        Ok(Dispatcher {
            dispatch: Arc::new(Dispatch {
                events,
                permits: Arc::new(Semaphore::new(settings.dispatcher.concurrency.max(1))),
                provider_cache: Arc::new(crate::provider_cache::ProviderCache::new(mongo)),
                app_throttle: crate::throttle::AppThrottle::new(
                    settings.dispatcher.app_concurrency,
                    settings.dispatcher.app_rate_per_second,
                ),
                settings,
                channel,
                redis,
                publisher,
                sender,
            }),
        })
    }

    /// The channel this dispatcher sends on.
    pub fn channel(&self) -> Channel {
        self.dispatch.channel
    }

    /// Consumes jobs until `shutdown`; serves the ops endpoints when `dispatcher.ops_listen` is set.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        if let Some(listen) = self.dispatch.settings.dispatcher.ops_listen {
            let ready = sprayer_shared::ops::Readiness::new()
                .rabbitmq(self.dispatch.publisher.clone())
                .redis(self.dispatch.redis.clone())
                .build();
            sprayer_shared::ops::serve_ops(
                listen,
                self.dispatch
                    .settings
                    .dispatcher
                    .ops_tls
                    .as_ref()
                    .map(|tls| tls.files("dispatcher.ops_tls"))
                    .as_ref(),
                ready,
                shutdown.clone(),
            )
            .await?;
        }
        crate::consumer::run(self.dispatch, shutdown).await;
        Ok(())
    }
}
