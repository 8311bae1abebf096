//! The SQL database a node keeps its durable state in (channels and stream keys today; the
//! archive index builds on it): an embedded SQLite file by default, PostgreSQL when several nodes
//! share it (`--database postgres://…`). One schema, written twice (`migrations/sqlite`,
//! `migrations/postgres`) so each engine gets its own types, applied by sqlx's migrator at open.
//!
//! Queries go through sqlx's `Any` driver with `$1`-style parameters, which both engines accept,
//! so a store written once runs on both (and its tests run on both).

use std::path::Path;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::migrate::Migrator;

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// File name of the embedded database inside the data directory.
pub const EMBEDDED_FILE: &str = "onair.db";
/// Name the embedded database had before it held more than channels; renamed at open.
const LEGACY_FILE: &str = "channels.db";

/// Which engine a [`Database`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite (one node).
    Sqlite,
    /// PostgreSQL (shared by nodes).
    Postgres,
}

/// Errors opening the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is neither `postgres://…` / `postgresql://…` nor `sqlite://…`.
    #[error("unsupported database URL {0}: use postgres://USER:PASSWORD@HOST:PORT/DB or sqlite://PATH")]
    Scheme(String),
    /// The data directory for the embedded database could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Connecting failed (server down, wrong password, file not writable, ...).
    #[error("database {url}: {source}")]
    Connect {
        /// The URL without its password.
        url: String,
        /// sqlx's error.
        source: sqlx::Error,
    },
    /// A migration failed, or the database was migrated by a newer or different schema.
    #[error("database {url}: migration failed: {source}")]
    Migrate {
        /// The URL without its password.
        url: String,
        /// sqlx's error.
        source: sqlx::migrate::MigrateError,
    },
}

/// An open, migrated database: a connection pool (≤ 8 connections, 5 s acquire timeout).
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    url: String,
}

/// `url` with its password replaced by `***`, for logs and errors.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

impl Database {
    /// Opens `url` (`postgres://USER:PASSWORD@HOST:PORT/DB`, with `?sslmode=require` for TLS, or
    /// `sqlite://PATH`), or with `None` the embedded `DATA_DIR/onair.db` (created if missing), and
    /// applies pending migrations. Errors: [`DbError`].
    pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<Database, DbError> {
        sqlx::any::install_default_drivers();
        let url = match url {
            Some(u) => u.to_string(),
            None => embedded_url(data_dir)?,
        };
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(DbError::Scheme(redacted(&url)));
        };
        let shown = redacted(&url);
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&url)
            .await
            .map_err(|source| DbError::Connect { url: shown.clone(), source })?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE,
            Backend::Postgres => &POSTGRES,
        };
        if backend == Backend::Sqlite {
            add_legacy_columns(&pool).await.map_err(|source| DbError::Connect { url: shown.clone(), source })?;
        }
        migrator.run(&pool).await.map_err(|source| DbError::Migrate { url: shown.clone(), source })?;
        tracing::debug!(url = %shown, ?backend, "database open");
        Ok(Database { pool, backend, url: shown })
    }

    /// The connection pool. Queries use `$1`-style parameters (both engines accept them).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The engine.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL without its password.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// `sqlite://DATA_DIR/onair.db?mode=rwc`, creating the directory and renaming a `channels.db`
/// left by an older version.
fn embedded_url(data_dir: &Path) -> Result<String, DbError> {
    std::fs::create_dir_all(data_dir).map_err(|source| DbError::DataDir { path: data_dir.display().to_string(), source })?;
    let file = data_dir.join(EMBEDDED_FILE);
    let legacy = data_dir.join(LEGACY_FILE);
    if !file.exists() && legacy.exists() {
        std::fs::rename(&legacy, &file).map_err(|source| DbError::DataDir { path: legacy.display().to_string(), source })?;
        tracing::info!(from = %legacy.display(), to = %file.display(), "renamed the embedded database");
    }
    Ok(format!("sqlite://{}?mode=rwc", file.display()))
}

/// Databases made before migrations existed may lack `channels.srt_passphrase` (added after the
/// first release); the first migration's `CREATE TABLE IF NOT EXISTS` would then keep the old
/// table, so the column is added here first.
async fn add_legacy_columns(pool: &AnyPool) -> Result<(), sqlx::Error> {
    let old_table: Option<(i64,)> = sqlx::query_as(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'channels'
         AND NOT EXISTS (SELECT 1 FROM pragma_table_info('channels') WHERE name = 'srt_passphrase')",
    )
    .fetch_optional(pool)
    .await?;
    if old_table.is_some() {
        sqlx::query("ALTER TABLE channels ADD COLUMN srt_passphrase TEXT").execute(pool).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redacted("postgres://onair:s3cret@db:5432/onair"), "postgres://onair:***@db:5432/onair");
        assert_eq!(redacted("sqlite:///tmp/x.db?mode=rwc"), "sqlite:///tmp/x.db?mode=rwc");
    }

    #[tokio::test]
    async fn embedded_database_upgrades_a_pre_migration_channels_db() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The schema the first release made, without the migrations table.
        let old = AnyPoolOptions::new();
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join(LEGACY_FILE).display());
        let pool = old.connect(&url).await.expect("old db");
        sqlx::query("CREATE TABLE channels (name TEXT PRIMARY KEY NOT NULL, stream_key TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL)")
            .execute(&pool)
            .await
            .expect("old schema");
        sqlx::query("INSERT INTO channels VALUES ('demo', 'live_x', 1)").execute(&pool).await.expect("row");
        pool.close().await;
        let db = Database::open(None, dir.path()).await.expect("open");
        assert_eq!(db.backend(), Backend::Sqlite);
        assert!(dir.path().join(EMBEDDED_FILE).exists() && !dir.path().join(LEGACY_FILE).exists());
        let row: (String, Option<String>) =
            sqlx::query_as("SELECT stream_key, srt_passphrase FROM channels WHERE name = $1").bind("demo").fetch_one(db.pool()).await.expect("row");
        assert_eq!(row, ("live_x".to_string(), None));
        // Opening again applies nothing new.
        drop(db);
        Database::open(None, dir.path()).await.expect("reopen");
    }

    #[tokio::test]
    async fn postgres_is_migrated_once_by_concurrent_nodes() {
        let pg = onair_test_engines::PostgresServer::start();
        let url = pg.url();
        let (a, b) = tokio::join!(Database::open(Some(&url), Path::new("unused")), Database::open(Some(&url), Path::new("unused")));
        let (a, b) = (a.expect("node a"), b.expect("node b"));
        assert_eq!((a.backend(), b.backend()), (Backend::Postgres, Backend::Postgres));
        let applied: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(a.pool()).await.expect("count");
        assert_eq!(applied.0, POSTGRES.iter().count() as i64);
        assert!(matches!(Database::open(Some("mysql://x"), Path::new("unused")).await, Err(DbError::Scheme(_))));
    }
}
