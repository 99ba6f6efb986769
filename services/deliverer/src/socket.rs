//! One browser socket, from the upgrade to the close: authenticate, register, send the inbox's
//! backlog, then live messages in inbox order; take acks, answer pings, ping, and close with a
//! documented code when something is wrong (see [`crate::protocol::close`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use secrecy::ExposeSecret;
use sprayer_shared::model::{AppId, DeliveryStatus, MessageId, UserId};
use sprayer_shared::wstoken::{self, TokenError};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::center::{self, AckError};
use crate::hub::Hub;
use crate::inbox::{self, InboxKeys};
use crate::protocol::{self, ClientFrame, close};
use crate::registry::Push;
use crate::reporter::ws_event;

/// Bad frames tolerated on one socket before it is closed.
const MAX_BAD_FRAMES: u32 = 10;

/// What the connect URL said.
#[derive(Debug, Default)]
pub struct Connect {
    /// `?token=`.
    pub token: Option<String>,
    /// `?app=`: the app the page expects; a token of another app is refused.
    pub app: Option<String>,
}

/// Why a socket ends.
#[derive(Debug)]
enum End {
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// The peer went away or the transport failed: nothing more to say.
    Gone,
}

struct Session {
    hub: Arc<Hub>,
    app: AppId,
    user: UserId,
    keys: InboxKeys,
    cursor: i64,
    last_heard: Instant,
    bad_frames: u32,
}

/// Runs one socket to its end.
pub async fn run(hub: Arc<Hub>, mut socket: WebSocket, connect: Connect) {
    let _tracked = hub.tracker.token();
    let (app, user) = match authenticate(&hub, &mut socket, connect).await {
        Ok(identity) => identity,
        Err(end) => {
            metrics::counter!("sprayer_ws_connections_total", "result" => "refused").increment(1);
            finish(&mut socket, end).await;
            return;
        }
    };
    metrics::counter!("sprayer_ws_connections_total", "result" => "accepted").increment(1);
    let (sender, mut pushes) = mpsc::channel(hub.settings.deliverer.send_buffer);
    let id = match hub.registry.register(&app, &user, sender).await {
        Ok(id) => id,
        Err(error) => {
            tracing::warn!(%error, "cannot register a socket");
            finish(&mut socket, End::Close(1011, "try again")).await;
            return;
        }
    };
    hub.presence.opened(&app, &user).await;
    let mut session = Session {
        keys: InboxKeys::new(&app, &user),
        hub: hub.clone(),
        app,
        user,
        cursor: 0,
        last_heard: Instant::now(),
        bad_frames: 0,
    };
    let end = Box::pin(session.serve(&mut socket, &mut pushes)).await;
    hub.registry.unregister(&session.app, &session.user, id);
    hub.presence.closed(&session.app, &session.user).await;
    let reason = match &end {
        End::Close(code, _) => close_reason(*code),
        End::Gone => "gone",
    };
    metrics::counter!("sprayer_ws_closed_total", "reason" => reason).increment(1);
    finish(&mut socket, end).await;
}

fn close_reason(code: u16) -> &'static str {
    match code {
        close::RESTART => "restart",
        close::SLOW_CONSUMER => "slow_consumer",
        close::IDLE => "idle",
        close::PROTOCOL => "protocol",
        _ => "other",
    }
}

async fn finish(socket: &mut WebSocket, end: End) {
    if let End::Close(code, reason) = end {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        // Send the close frame, then read until the client answers it (the closing handshake),
        // so that the client sees the code even when it still had frames to answer.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            if socket.send(Message::Close(Some(frame))).await.is_ok() {
                while let Some(Ok(_)) = socket.recv().await {}
            }
        })
        .await;
    }
}

async fn authenticate(
    hub: &Hub,
    socket: &mut WebSocket,
    connect: Connect,
) -> Result<(AppId, UserId), End> {
    let token = match connect.token {
        Some(token) => token,
        None => first_frame_token(socket, hub.settings.deliverer.auth_timeout).await?,
    };
    let Some(secret) = &hub.settings.deliverer.token_secret else {
        return Err(End::Close(
            close::UNAUTHENTICATED,
            "tokens are not configured",
        ));
    };
    let claims =
        wstoken::verify(secret.expose_secret().as_bytes(), &token).map_err(
            |error| match error {
                TokenError::Expired => End::Close(close::TOKEN_EXPIRED, "token expired"),
                TokenError::Invalid => End::Close(close::UNAUTHENTICATED, "invalid token"),
            },
        )?;
    if connect
        .app
        .is_some_and(|expected| expected != claims.app.as_str())
    {
        return Err(End::Close(close::WRONG_APP, "token for another app"));
    }
    Ok((claims.app, claims.sub))
}

async fn first_frame_token(socket: &mut WebSocket, within: Duration) -> Result<String, End> {
    let unauthenticated = End::Close(close::UNAUTHENTICATED, "authenticate first");
    let deadline = Instant::now() + within;
    loop {
        let next = tokio::time::timeout_at(deadline, socket.recv()).await;
        match next {
            Err(_) => return Err(End::Close(close::UNAUTHENTICATED, "no auth frame in time")),
            Ok(None | Some(Err(_))) => return Err(End::Gone),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(Some(Ok(Message::Text(text)))) => {
                return match ClientFrame::read(&text) {
                    Ok(ClientFrame::Auth { token }) => Ok(token),
                    _ => Err(unauthenticated),
                };
            }
            Ok(Some(Ok(_))) => return Err(unauthenticated),
        }
    }
}

impl Session {
    async fn serve(&mut self, socket: &mut WebSocket, pushes: &mut mpsc::Receiver<Push>) -> End {
        let hub = self.hub.clone();
        let settings = &hub.settings.deliverer;
        let hello = protocol::hello(
            self.user.as_str(),
            self.hub.registry.node().as_str(),
            settings.heartbeat.as_millis(),
        );
        if let Err(end) = self.send(socket, hello).await {
            return end;
        }
        if settings.history_max > 0
            && let Err(end) = self.send_counts(socket).await
        {
            return end;
        }
        if let Err(end) = Box::pin(self.catch_up(socket)).await {
            return end;
        }
        let mut heartbeat =
            tokio::time::interval_at(Instant::now() + settings.heartbeat, settings.heartbeat);
        let draining = self.hub.draining.clone();
        loop {
            let step = tokio::select! {
                biased;
                _ = draining.cancelled() => {
                    let _ = self.send(socket, protocol::reconnect("the node is stopping")).await;
                    Err(End::Close(close::RESTART, "node stopping; reconnect"))
                }
                frame = socket.recv() => match frame {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Err(End::Gone),
                    Some(Ok(frame)) => Box::pin(self.on_frame(socket, frame)).await,
                },
                push = pushes.recv() => match push {
                    Some(_) if pushes.is_closed() => Err(self.slow()),
                    None => Err(self.slow()),
                    Some(push) => Box::pin(self.on_push(socket, push)).await,
                },
                _ = heartbeat.tick() => {
                    if self.last_heard.elapsed() > settings.idle_timeout {
                        Err(End::Close(close::IDLE, "idle"))
                    } else {
                        self.send_message(socket, Message::Ping(Default::default())).await
                    }
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    fn slow(&self) -> End {
        End::Close(close::SLOW_CONSUMER, "slow consumer: send buffer full")
    }

    async fn send(&self, socket: &mut WebSocket, text: String) -> Result<(), End> {
        self.send_message(socket, Message::Text(text.into())).await
    }

    async fn send_message(&self, socket: &mut WebSocket, message: Message) -> Result<(), End> {
        let within = self.hub.settings.deliverer.write_timeout;
        match tokio::time::timeout(within, socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(End::Close(
                close::SLOW_CONSUMER,
                "slow consumer: write timed out",
            )),
        }
    }

    async fn deliver(
        &mut self,
        socket: &mut WebSocket,
        seq: i64,
        id: &str,
        message: &str,
    ) -> Result<(), End> {
        self.send(socket, protocol::message(seq, message)).await?;
        self.cursor = self.cursor.max(seq);
        metrics::counter!("sprayer_ws_messages_sent_total").increment(1);
        self.hub
            .reporter
            .report(ws_event(
                &self.app,
                &self.user,
                id,
                DeliveryStatus::Sent,
                None,
            ))
            .await;
        Ok(())
    }

    async fn on_push(&mut self, socket: &mut WebSocket, push: Push) -> Result<(), End> {
        match push {
            Push::Entry { seq, .. } | Push::Stored { seq } if seq <= self.cursor => Ok(()),
            Push::Entry {
                seq, id, message, ..
            } => self.deliver(socket, seq, &id, &message).await,
            Push::Stored { .. } | Push::CatchUp => self.catch_up(socket).await,
            Push::Frame(frame) => self.send(socket, frame.to_string()).await,
        }
    }

    /// Sends everything in the inbox after the cursor; reports what expired.
    async fn catch_up(&mut self, socket: &mut WebSocket) -> Result<(), End> {
        let batch = self.hub.settings.deliverer.read_batch;
        loop {
            let mut redis = self.hub.redis.clone();
            let read = match inbox::read(&mut redis, &self.keys, self.cursor, batch).await {
                Ok(read) => read,
                Err(error) => {
                    tracing::warn!(%error, "cannot read an inbox");
                    return Err(End::Close(1011, "inbox unavailable; reconnect"));
                }
            };
            for id in &read.expired {
                self.hub
                    .reporter
                    .report(ws_event(
                        &self.app,
                        &self.user,
                        id,
                        DeliveryStatus::Expired,
                        None,
                    ))
                    .await;
            }
            for entry in &read.entries {
                self.deliver(socket, entry.seq, &entry.id, &entry.message)
                    .await?;
            }
            self.cursor = self.cursor.max(read.cursor);
            if !read.more {
                return Ok(());
            }
        }
    }

    async fn on_frame(&mut self, socket: &mut WebSocket, frame: Message) -> Result<(), End> {
        self.last_heard = Instant::now();
        let text = match frame {
            Message::Text(text) => text,
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => return Ok(()),
            Message::Binary(_) => {
                return Err(End::Close(
                    close::PROTOCOL,
                    "binary frames are not part of the protocol",
                ));
            }
        };
        match ClientFrame::read(&text) {
            Ok(ClientFrame::Ping) => self.send(socket, protocol::PONG.to_owned()).await,
            Ok(ClientFrame::Ack { ids }) => self.acknowledge(socket, ids).await,
            Ok(ClientFrame::Counts) => self.send_counts(socket).await,
            Ok(ClientFrame::State(request)) => self.change_state(socket, &request).await,
            Ok(ClientFrame::Auth { .. }) => {
                self.refuse(socket, "bad_frame", "already authenticated")
                    .await
            }
            Err(refused) => self.refuse(socket, "bad_frame", &refused.to_string()).await,
        }
    }

    async fn refuse(
        &mut self,
        socket: &mut WebSocket,
        code: &str,
        detail: &str,
    ) -> Result<(), End> {
        self.bad_frames += 1;
        if self.bad_frames > MAX_BAD_FRAMES {
            return Err(End::Close(close::PROTOCOL, "too many bad frames"));
        }
        self.send(socket, protocol::error(code, detail)).await
    }

    async fn acknowledge(&mut self, socket: &mut WebSocket, ids: Vec<String>) -> Result<(), End> {
        if let Some(bad) = ids.iter().find(|id| MessageId::parse(id.as_str()).is_err()) {
            let detail = format!("not a message id: {bad:?}");
            return self.refuse(socket, "bad_frame", &detail).await;
        }
        if ids.is_empty() {
            return Ok(());
        }
        match center::acknowledge(&self.hub, &self.app, &self.user, &self.keys, &ids).await {
            Ok(_) => {}
            Err(AckError::Unstored(error)) => {
                tracing::warn!(%error, "cannot store acks");
                let frame = protocol::error("unavailable", "acks not stored; send them again");
                return self.send(socket, frame).await;
            }
            Err(AckError::Unconfirmed(detail)) => {
                tracing::warn!(detail, "cannot publish delivered events");
                let frame = protocol::error("unavailable", "acks not confirmed; send them again");
                return self.send(socket, frame).await;
            }
        }
        self.send(socket, protocol::acked(&ids)).await
    }

    async fn send_counts(&self, socket: &mut WebSocket) -> Result<(), End> {
        match center::counts(&self.hub, &self.keys).await {
            Ok(counts) => self.send(socket, center::counts_frame(&counts)).await,
            Err(error) => {
                tracing::warn!(%error, "cannot count a history");
                let frame = protocol::error("unavailable", "counts unavailable; ask again");
                self.send(socket, frame).await
            }
        }
    }

    /// Changes the state of messages of the history; the `state` and `counts` frames come to
    /// every socket of the user, this one too, as for a change made elsewhere.
    async fn change_state(
        &mut self,
        socket: &mut WebSocket,
        request: &center::StateRequest,
    ) -> Result<(), End> {
        let change = match request.checked() {
            Ok(change) => change,
            Err(bad) => {
                let detail = format!("{}: {}", bad.field, bad.detail);
                return self.refuse(socket, "bad_frame", &detail).await;
            }
        };
        match center::apply(&self.hub, &self.app, &self.user, &change).await {
            Ok(_) => Ok(()),
            Err(center::ChangeError::NotFound(missing)) => {
                let detail = format!("not in this user's history: {}", missing.join(", "));
                self.send(socket, protocol::error("not_found", &detail))
                    .await
            }
            Err(center::ChangeError::Redis(error)) => {
                tracing::warn!(%error, "cannot change a history's state");
                let frame = protocol::error("unavailable", "state not stored; send it again");
                self.send(socket, frame).await
            }
        }
    }
}
