//! OnAir chat: each channel's chat split into rooms of about 200 members (Justin.tv's social
//! groups), served over a WebSocket ([`protocol`]) by every `onair serve` node.
//!
//! - [`protocol`]: the JSON frames and close codes (sans-IO);
//! - [`rooms`]: where a joiner goes (pure);
//! - [`identity`]: chat tokens for viewers, moderator tokens for the broadcaster and moderators;
//! - [`hub`]: channels → rooms → members with bounded queues, rate limits, slow mode, moderation;
//! - [`bus`]: channel-wide events between nodes (Redis pub/sub);
//! - [`placement`]: which node hosts each room in a cluster (sans-IO, over the registry's view);
//! - [`history`]: the rooms' recent messages in Redis, so a room that moves keeps them;
//! - [`store`]: moderator tokens and bans in the database;
//! - [`ws`]: the axum routes;
//! - [`irc`]: the IRC gateway (IRCv3 tags, the subset of IRC Twitch serves).

pub mod bus;
pub mod config;
pub mod history;
pub mod hub;
pub mod identity;
pub mod irc;
pub mod placement;
pub mod protocol;
pub mod rooms;
pub mod store;
pub mod ws;

pub use config::ChatConfig;
pub use hub::{Chat, ChatCluster, JoinError, Session};
pub use store::ChatStore;
