//! Channels and their stream keys, in the node's [`Database`]: embedded SQLite by default,
//! PostgreSQL when several ingest nodes share their channels (the same code and tests on both).

use onair_db::Database;
use rand::distr::{Alphanumeric, SampleString};
use sqlx::Row;

/// A channel: a name viewers use and a secret key broadcasters publish with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Channel {
    /// Name in URLs: 1–64 of `a-z 0-9 _ -`.
    pub name: String,
    /// Stream key: the RTMP stream name (`rtmp://HOST/live/KEY`).
    pub stream_key: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: i64,
    /// SRT passphrase (10–79 characters) a publisher must encrypt with, if set.
    pub srt_passphrase: Option<String>,
}

/// Errors from the channel database.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// A query failed (file not writable, disk full, PostgreSQL unreachable, ...).
    #[error("channel database: {0}")]
    Db(#[from] sqlx::Error),
    /// The name is not 1–64 of `a-z 0-9 _ -`.
    #[error("invalid channel name {0:?}: use 1-64 of a-z, 0-9, _ and -")]
    InvalidName(String),
    /// A channel with this name exists.
    #[error("channel {0} already exists")]
    Exists(String),
    /// SRT passphrases are 10 to 79 characters (SRT's own rule).
    #[error("an SRT passphrase must be 10 to 79 characters")]
    InvalidPassphrase,
}

/// Handle to the channels in a [`Database`].
#[derive(Debug, Clone)]
pub struct Channels {
    db: Database,
}

/// Length of generated stream keys (alphanumeric characters, ~190 bits).
const KEY_LEN: usize = 32;

impl Channels {
    /// The channels in `db` (migrated by [`Database::open`]).
    pub fn new(db: Database) -> Self {
        Channels { db }
    }

    /// Creates channel `name` with a fresh random stream key.
    /// Errors: [`ChannelError::InvalidName`], [`ChannelError::Exists`], [`ChannelError::Db`].
    pub async fn create(&self, name: &str) -> Result<Channel, ChannelError> {
        self.create_with(name, None).await
    }

    /// Creates channel `name` with a fresh stream key and an optional SRT passphrase.
    /// Errors: as [`Channels::create`], and [`ChannelError::InvalidPassphrase`].
    pub async fn create_with(&self, name: &str, srt_passphrase: Option<&str>) -> Result<Channel, ChannelError> {
        if srt_passphrase.is_some_and(|p| !(10..=79).contains(&p.chars().count())) {
            return Err(ChannelError::InvalidPassphrase);
        }
        if name.is_empty()
            || name.len() > 64
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(ChannelError::InvalidName(name.to_string()));
        }
        let key = new_key();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let res = sqlx::query("INSERT INTO channels (name, stream_key, created_at, srt_passphrase) VALUES ($1, $2, $3, $4)")
            .bind(name)
            .bind(&key)
            .bind(now)
            .bind(srt_passphrase)
            .execute(self.db.pool())
            .await;
        match res {
            Ok(_) => Ok(Channel {
                name: name.to_string(),
                stream_key: key,
                created_at: now,
                srt_passphrase: srt_passphrase.map(str::to_string),
            }),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(ChannelError::Exists(name.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// All channels, by name.
    pub async fn list(&self) -> Result<Vec<Channel>, ChannelError> {
        let rows = sqlx::query("SELECT name, stream_key, created_at, srt_passphrase FROM channels ORDER BY name").fetch_all(self.db.pool()).await?;
        Ok(rows.iter().map(row_to_channel).collect())
    }

    /// The channel whose stream key is `key`, if any.
    pub async fn by_key(&self, key: &str) -> Result<Option<Channel>, ChannelError> {
        let row = sqlx::query("SELECT name, stream_key, created_at, srt_passphrase FROM channels WHERE stream_key = $1")
            .bind(key)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.as_ref().map(row_to_channel))
    }

    /// Gives channel `name` a fresh stream key (the old one is refused from now on; a publisher
    /// already live stays until it disconnects). Returns the channel, or `None` if there is none.
    /// Errors: [`ChannelError::Db`].
    pub async fn rotate_key(&self, name: &str) -> Result<Option<Channel>, ChannelError> {
        let key = new_key();
        let changed = sqlx::query("UPDATE channels SET stream_key = $1 WHERE name = $2").bind(&key).bind(name).execute(self.db.pool()).await?;
        if changed.rows_affected() == 0 {
            return Ok(None);
        }
        self.by_name(name).await
    }

    /// Deletes channel `name` (its key is refused from now on). Returns false if there was none.
    /// Errors: [`ChannelError::Db`].
    pub async fn delete(&self, name: &str) -> Result<bool, ChannelError> {
        let deleted = sqlx::query("DELETE FROM channels WHERE name = $1").bind(name).execute(self.db.pool()).await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// The channel called `name`, if any.
    pub async fn by_name(&self, name: &str) -> Result<Option<Channel>, ChannelError> {
        let row = sqlx::query("SELECT name, stream_key, created_at, srt_passphrase FROM channels WHERE name = $1")
            .bind(name)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.as_ref().map(row_to_channel))
    }
}

/// A fresh stream key: `live_` and [`KEY_LEN`] random alphanumerics.
fn new_key() -> String {
    format!("live_{}", Alphanumeric.sample_string(&mut rand::rng(), KEY_LEN))
}

fn row_to_channel(row: &sqlx::any::AnyRow) -> Channel {
    Channel {
        name: row.get("name"),
        stream_key: row.get("stream_key"),
        created_at: row.get("created_at"),
        srt_passphrase: row.get("srt_passphrase"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// What every backend must do.
    async fn create_list_lookup(ch: &Channels) {
        let demo = ch.create("demo").await.expect("create");
        assert!(demo.stream_key.starts_with("live_") && demo.stream_key.len() == 5 + KEY_LEN);
        assert!(matches!(ch.create("demo").await, Err(ChannelError::Exists(_))));
        assert!(matches!(ch.create("Bad Name").await, Err(ChannelError::InvalidName(_))));
        assert!(matches!(ch.create_with("x", Some("short")).await, Err(ChannelError::InvalidPassphrase)));
        let secret = ch.create_with("secret", Some("0123456789abc")).await.expect("create");
        assert_eq!(ch.by_key(&secret.stream_key).await.expect("lookup").and_then(|c| c.srt_passphrase).as_deref(), Some("0123456789abc"));
        let other = ch.create("other").await.expect("create");
        assert_ne!(other.stream_key, demo.stream_key);
        assert_eq!(ch.by_key(&demo.stream_key).await.expect("lookup"), Some(demo.clone()));
        assert_eq!(ch.by_key("nope").await.expect("lookup"), None);
        assert_eq!(ch.list().await.expect("list").iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["demo", "other", "secret"]);
        // A new key replaces the old one; a deleted channel's key opens nothing.
        let rotated = ch.rotate_key("other").await.expect("rotate").expect("other");
        assert_ne!(rotated.stream_key, other.stream_key);
        assert_eq!(ch.by_key(&other.stream_key).await.expect("lookup"), None);
        assert_eq!(ch.by_key(&rotated.stream_key).await.expect("lookup").map(|c| c.name), Some("other".into()));
        assert_eq!(ch.rotate_key("nope").await.expect("rotate"), None);
        assert!(ch.delete("other").await.expect("delete"));
        assert!(!ch.delete("other").await.expect("delete"));
        assert_eq!(ch.by_key(&rotated.stream_key).await.expect("lookup"), None);
        assert_eq!(ch.list().await.expect("list").len(), 2);
    }

    #[tokio::test]
    async fn sqlite_creates_lists_and_looks_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ch = Channels::new(Database::open(None, dir.path()).await.expect("open"));
        create_list_lookup(&ch).await;
        let demo = ch.by_name("demo").await.expect("lookup");
        // Reopening sees the same data.
        drop(ch);
        let ch = Channels::new(Database::open(None, dir.path()).await.expect("reopen"));
        assert_eq!(ch.by_name("demo").await.expect("lookup"), demo);
    }

    #[tokio::test]
    async fn postgres_creates_lists_and_looks_up_shared_by_nodes() {
        let pg = onair_test_engines::PostgresServer::start();
        let node = || async { Channels::new(Database::open(Some(&pg.url()), Path::new("unused")).await.expect("open")) };
        let (a, b) = (node().await, node().await);
        create_list_lookup(&a).await;
        // Another node sees the channels at once, and cannot take a name that exists.
        let demo = a.by_name("demo").await.expect("lookup").expect("demo");
        assert_eq!(b.by_key(&demo.stream_key).await.expect("lookup"), Some(demo));
        assert!(matches!(b.create("demo").await, Err(ChannelError::Exists(_))));
    }
}
