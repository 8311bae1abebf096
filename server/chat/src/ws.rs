//! The chat's HTTP routes: `GET /api/v1/chat/{channel}/token` (a viewer's chat token),
//! `GET /api/v1/chat/{channel}/room[?room=N]` (where to connect: in a cluster, the room and the
//! node hosting it) and `GET /api/v1/chat/{channel}?token=…[&room=N]`, the WebSocket
//! ([`crate::protocol`]).

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::hub::{Chat, Session};
use crate::protocol::{parse, ClientMessage, Close, ErrorCode, ErrorFrame, ServerMessage};

/// Largest frame read, bytes: a 500-character message is at most ~2 KiB of JSON; larger frames
/// close the connection with 1009.
pub const MAX_FRAME_BYTES: usize = 8 * 1024;
/// A frame not written to the client within this is a dead client.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The server pings this often; a client silent for three of them is gone.
const PING_EVERY: Duration = Duration::from_secs(30);

/// The client's address, put in the request's extensions by the server (`X-Forwarded-For` behind
/// trusted proxies); loopback when absent.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

#[derive(Clone)]
struct Routes {
    chat: Chat,
    token_limiter: std::sync::Arc<DefaultKeyedRateLimiter<IpAddr>>,
}

/// The chat routes over `chat`.
pub fn router(chat: Chat) -> Router {
    let per_minute = std::num::NonZeroU32::new(chat.config().tokens_per_minute.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    let token_limiter = std::sync::Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute)));
    Router::new()
        .route("/api/v1/chat/{channel}", get(websocket))
        .route("/api/v1/chat/{channel}/token", get(token))
        .route("/api/v1/chat/{channel}/room", get(room))
        .with_state(Routes { chat, token_limiter })
}

/// Channel names: 1–64 of `a-z 0-9 _ -` (the channels' rule).
fn valid_channel(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn client(request: &Request) -> IpAddr {
    request.extensions().get::<ClientAddr>().map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0)
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(serde_json::json!({ "error": message }))).into_response()
}

#[derive(Debug, serde::Deserialize)]
struct TokenQuery {
    name: Option<String>,
}

/// `GET /api/v1/chat/{channel}/token[?name=NAME]`: `{token, name, expires_at_ms, websocket}`;
/// 400 for a name a viewer may not use, 429 over `tokens_per_minute` per client address.
async fn token(State(routes): State<Routes>, Path(channel): Path<String>, Query(q): Query<TokenQuery>, request: Request) -> Response {
    if !valid_channel(&channel) {
        return json_error(StatusCode::NOT_FOUND, "no such channel");
    }
    if routes.token_limiter.check_key(&client(&request)).is_err() {
        metrics::counter!("onair_chat_refused_total", "code" => "token_rate_limited").increment(1);
        return json_error(StatusCode::TOO_MANY_REQUESTS, "too many chat tokens: try again in a minute");
    }
    match routes.chat.tokens().issue(&channel, q.name.as_deref().filter(|n| !n.is_empty()), std::time::SystemTime::now()) {
        Ok(t) => {
            let body = serde_json::json!({
                "token": t.token, "name": t.name, "expires_at_ms": t.expires_at_ms,
                "websocket": format!("/api/v1/chat/{channel}"),
            });
            ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
        }
        Err(e) => json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

#[derive(Debug, serde::Deserialize)]
struct RoomQuery {
    room: Option<u32>,
}

/// `GET /api/v1/chat/{channel}/room[?room=N]`: `{room, websocket}` — where a joiner connects
/// (then adding `token`). In a cluster, `room` is the room chosen for it (the one asked for while
/// it has space, [`crate::rooms::place`]) and `websocket` an absolute `ws(s)://` URL on the node
/// hosting it ([`crate::placement`]); on a single node `room` is the one asked for (or null: the
/// join places it) and `websocket` this node's path. 503 when no chat node is known. Never cached.
async fn room(State(routes): State<Routes>, Path(channel): Path<String>, Query(q): Query<RoomQuery>) -> Response {
    if !valid_channel(&channel) {
        return json_error(StatusCode::NOT_FOUND, "no such channel");
    }
    let path = format!("/api/v1/chat/{channel}");
    let body = if !routes.chat.clustered() {
        serde_json::json!({ "room": q.room, "websocket": path })
    } else {
        let Some((room, base)) = routes.chat.place(&channel, q.room) else {
            return json_error(StatusCode::SERVICE_UNAVAILABLE, "no chat server is available");
        };
        metrics::counter!("onair_chat_placements_total").increment(1);
        let ws = base.strip_prefix("http").map_or_else(|| base.clone(), |rest| format!("ws{rest}"));
        serde_json::json!({ "room": room, "websocket": format!("{}{path}?room={room}", ws.trim_end_matches('/')) })
    };
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

#[derive(Debug, serde::Deserialize)]
struct JoinQuery {
    token: Option<String>,
    room: Option<u32>,
}

/// The WebSocket: refusals (token, ban, name, full) arrive as an `error` frame and a close code,
/// since a browser sees no HTTP status of a WebSocket handshake.
async fn websocket(State(routes): State<Routes>, Path(channel): Path<String>, Query(q): Query<JoinQuery>, upgrade: WebSocketUpgrade, request: Request) -> Response {
    if !valid_channel(&channel) {
        return json_error(StatusCode::NOT_FOUND, "no such channel");
    }
    let ip = client(&request);
    let chat = routes.chat.clone();
    upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            let joined = match chat.identify(&channel, q.token.as_deref().unwrap_or("")).await {
                Ok(identity) => chat.join(&channel, identity, ip, q.room).await,
                Err(e) => Err(e),
            };
            match joined {
                Ok((session, frames)) => connection(socket, session, frames).await,
                Err(e) => {
                    let close = e.close();
                    tracing::debug!(%channel, %ip, error = %e, "chat join refused");
                    metrics::counter!("onair_chat_refused_total", "code" => close.label()).increment(1);
                    let code = match close {
                        Close::Banned => ErrorCode::Banned,
                        Close::NameInUse => ErrorCode::NameInUse,
                        Close::Full => ErrorCode::Full,
                        Close::Moved => ErrorCode::Moved,
                        _ => ErrorCode::Unauthorized,
                    };
                    let frame = ErrorFrame { code, message: e.to_string(), retry_after_ms: None };
                    refuse(socket, &ServerMessage::Error(&frame).to_json(), close).await;
                }
            }
        })
}

async fn refuse(mut socket: WebSocket, error: &str, close: Close) {
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        socket.send(Message::Text(error.into())).await?;
        socket.send(Message::Close(Some(CloseFrame { code: close.code(), reason: close.reason().into() }))).await
    })
    .await;
}

/// What ends a connection.
enum End {
    /// The client closed or the socket failed: nothing more to send.
    Gone,
    /// Close with this.
    Close(Close),
}

async fn connection(mut socket: WebSocket, session: Session, mut frames: tokio::sync::mpsc::Receiver<axum::extract::ws::Utf8Bytes>) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut silent_pings = 0u32;
    let end = loop {
        tokio::select! {
            biased;
            reason = session.kicked() => break End::Close(reason),
            out = frames.recv() => {
                let Some(text) = out else { break End::Gone };
                match tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Text(text))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break End::Gone,
                    Err(_) => break End::Close(Close::SlowConsumer),
                }
            }
            incoming = socket.recv() => {
                silent_pings = 0;
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(close) = handle(&session, text.as_str()).await {
                            break End::Close(close);
                        }
                    }
                    Some(Ok(Message::Binary(_))) => break End::Close(Close::Binary),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break End::Gone,
                    // Over the frame limit, or not WebSocket at all.
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "chat: bad frame");
                        break End::Close(Close::TooBig);
                    }
                }
            }
            _ = ping.tick() => {
                silent_pings += 1;
                if silent_pings > 3 {
                    break End::Gone;
                }
                let _ = tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Ping(Default::default()))).await;
            }
        }
    };
    if let End::Close(close) = end {
        if matches!(close, Close::Binary | Close::Invalid | Close::TooBig) {
            metrics::counter!("onair_chat_bad_frames_total", "kind" => close.label()).increment(1);
        }
        tracing::debug!(name = %session.identity().name, room = session.room(), code = close.code(), "chat: closing");
        let frame = CloseFrame { code: close.code(), reason: close.reason().into() };
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(Message::Close(Some(frame)))).await;
    }
}

/// Acts on one text frame; a refusal goes back as an `error` frame. Returns a close for a frame
/// that is not a message at all.
async fn handle(session: &Session, text: &str) -> Option<Close> {
    let message = match parse(text) {
        Ok(m) => m,
        Err(e) => {
            if serde_json::from_str::<serde_json::Value>(text).is_err() {
                return Some(Close::Invalid);
            }
            session.refuse(&ErrorFrame { code: ErrorCode::BadMessage, message: e, retry_after_ms: None });
            return None;
        }
    };
    let done = match message {
        ClientMessage::Send { text } => session.send(&text),
        ClientMessage::Delete { id } => session.delete(&id),
        ClientMessage::Timeout { user, seconds } => session.ban(&user, Some(seconds)).await,
        ClientMessage::Ban { user } => session.ban(&user, None).await,
        ClientMessage::Unban { user } => session.unban(&user).await,
        ClientMessage::Slow { seconds } => session.slow(seconds),
    };
    if let Err(e) = done {
        session.refuse(&e);
    }
    None
}
