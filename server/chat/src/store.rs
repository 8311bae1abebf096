//! Chat state that outlives a process, in the node's database (SQLite embedded, PostgreSQL
//! shared): moderator tokens (their SHA-256) and bans/timeouts.

use onair_db::Database;
use sqlx::Row;

use crate::identity::{new_moderator_token, token_hash, valid_name, Identity};
use crate::protocol::Role;

/// `until_ms` of a permanent ban.
pub const FOREVER: i64 = i64::MAX;

/// A ban or timeout.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ban {
    /// The banned token subject.
    pub subject: String,
    /// The name it had.
    pub name: String,
    /// The client address it was connected from (`""` when unknown).
    pub ip: String,
    /// End, Unix ms ([`FOREVER`] for a ban).
    pub until_ms: i64,
}

/// Errors from the chat tables.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A query failed.
    #[error("chat database: {0}")]
    Db(#[from] sqlx::Error),
    /// A moderator name must be 3–25 of `A-Z a-z 0-9 _`.
    #[error("invalid moderator name {0:?}: use 3-25 of A-Z, a-z, 0-9 and _")]
    Name(String),
}

/// The chat tables of a [`Database`].
#[derive(Debug, Clone)]
pub struct ChatStore {
    db: Database,
}

impl ChatStore {
    /// The chat tables in `db` (migrated by [`Database::open`]).
    pub fn new(db: Database) -> Self {
        ChatStore { db }
    }

    /// Whether every node shares this database (PostgreSQL), so a ban stored by one is seen by all.
    pub fn shared(&self) -> bool {
        self.db.backend() == onair_db::Backend::Postgres
    }

    /// Creates a token for `channel` speaking as `name` (the broadcaster's is named after the
    /// channel); returns the token, shown once. Errors: [`StoreError`].
    pub async fn create_moderator(&self, channel: &str, name: &str, role: Role, now_ms: i64) -> Result<String, StoreError> {
        if !valid_name(name) && role != Role::Broadcaster {
            return Err(StoreError::Name(name.to_string()));
        }
        let token = new_moderator_token();
        sqlx::query("INSERT INTO chat_moderators (token_sha256, channel, name, role, created_at_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(token_hash(&token))
            .bind(channel)
            .bind(name)
            .bind(role.as_str())
            .bind(now_ms)
            .execute(self.db.pool())
            .await?;
        Ok(token)
    }

    /// The channel a moderator token is for and who it speaks as there, if it is a token.
    pub async fn moderator(&self, token: &str) -> Result<Option<(String, Identity)>, StoreError> {
        let hash = token_hash(token);
        let row = sqlx::query("SELECT channel, name, role FROM chat_moderators WHERE token_sha256 = $1").bind(&hash).fetch_optional(self.db.pool()).await?;
        Ok(row.map(|r| {
            let role: String = r.get("role");
            let identity = Identity {
                subject: format!("mod:{}", &hash[..16]),
                name: r.get("name"),
                role: if role == "broadcaster" { Role::Broadcaster } else { Role::Moderator },
            };
            (r.get("channel"), identity)
        }))
    }

    /// The names the channel's moderators speak as (viewers may not take them).
    pub async fn moderator_names(&self, channel: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT name FROM chat_moderators WHERE channel = $1").bind(channel).fetch_all(self.db.pool()).await?;
        Ok(rows.iter().map(|r| r.get("name")).collect())
    }

    /// Stores (or replaces) a ban of `ban.subject` in `channel`.
    pub async fn ban(&self, channel: &str, ban: &Ban, by: &str, now_ms: i64) -> Result<(), StoreError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query("DELETE FROM chat_bans WHERE channel = $1 AND subject = $2").bind(channel).bind(&ban.subject).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO chat_bans (channel, subject, name, ip, until_ms, created_at_ms, by_name) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(channel)
            .bind(&ban.subject)
            .bind(&ban.name)
            .bind(&ban.ip)
            .bind(ban.until_ms)
            .bind(now_ms)
            .bind(by)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Lifts every ban of `name` (case-insensitive) in `channel`; returns how many.
    pub async fn unban(&self, channel: &str, name: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM chat_bans WHERE channel = $1 AND LOWER(name) = LOWER($2)").bind(channel).bind(name).execute(self.db.pool()).await?;
        Ok(done.rows_affected())
    }

    /// The channel's bans and timeouts still in force at `now_ms`.
    pub async fn bans(&self, channel: &str, now_ms: i64) -> Result<Vec<Ban>, StoreError> {
        let rows = sqlx::query("SELECT subject, name, ip, until_ms FROM chat_bans WHERE channel = $1 AND until_ms > $2")
            .bind(channel)
            .bind(now_ms)
            .fetch_all(self.db.pool())
            .await?;
        Ok(rows.iter().map(|r| Ban { subject: r.get("subject"), name: r.get("name"), ip: r.get("ip"), until_ms: r.get("until_ms") }).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn moderators_and_bans(store: &ChatStore) {
        let token = store.create_moderator("demo", "mod_anna", Role::Moderator, 1).await.expect("create");
        let broadcaster = store.create_moderator("demo", "demo", Role::Broadcaster, 1).await.expect("create");
        let (channel, anna) = store.moderator(&token).await.expect("query").expect("a moderator");
        assert_eq!((channel.as_str(), anna.name.as_str(), anna.role), ("demo", "mod_anna", Role::Moderator));
        assert_eq!(store.moderator(&broadcaster).await.expect("query").map(|(_, i)| i.role), Some(Role::Broadcaster));
        assert_eq!(store.moderator("mod_wrong").await.expect("query"), None);
        assert!(matches!(store.create_moderator("demo", "a b", Role::Moderator, 1).await, Err(StoreError::Name(_))));
        let mut names = store.moderator_names("demo").await.expect("names");
        names.sort();
        assert_eq!(names, ["demo", "mod_anna"]);

        let ban = Ban { subject: "s1".into(), name: "Troll".into(), ip: "192.0.2.7".into(), until_ms: FOREVER };
        store.ban("demo", &ban, "mod_anna", 10).await.expect("ban");
        let timeout = Ban { subject: "s2".into(), name: "loud".into(), ip: "192.0.2.8".into(), until_ms: 5_000 };
        store.ban("demo", &timeout, "mod_anna", 10).await.expect("timeout");
        assert_eq!(store.bans("demo", 1_000).await.expect("bans").len(), 2);
        // The timeout ends; the ban holds; banning again replaces.
        assert_eq!(store.bans("demo", 6_000).await.expect("bans"), vec![ban.clone()]);
        store.ban("demo", &ban, "demo", 20).await.expect("again");
        assert_eq!(store.bans("demo", 6_000).await.expect("bans").len(), 1);
        assert_eq!(store.bans("other", 6_000).await.expect("bans"), vec![]);
        assert_eq!(store.unban("demo", "troll").await.expect("unban"), 1);
        assert_eq!(store.bans("demo", 6_000).await.expect("bans"), vec![]);
    }

    #[tokio::test]
    async fn sqlite_keeps_moderators_and_bans() {
        let dir = tempfile::tempdir().expect("tempdir");
        moderators_and_bans(&ChatStore::new(Database::open(None, dir.path()).await.expect("open"))).await;
    }

    #[tokio::test]
    async fn postgres_keeps_moderators_and_bans() {
        let pg = onair_test_engines::PostgresServer::start();
        let db = Database::open(Some(&pg.url()), std::path::Path::new("unused")).await.expect("open");
        moderators_and_bans(&ChatStore::new(db)).await;
    }
}
