//! The essential tasks of a running node (listeners, sweeper, cluster loops), supervised as one
//! set: any member's end before shutdown is the node's failure.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Time the tasks get to stop after a graceful shutdown starts.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

/// Why a running node stopped by itself.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An essential task (a listener, the sweeper) ended: the node cannot go on.
    #[error("essential task {0} stopped")]
    TaskStopped(&'static str),
    /// An essential task panicked.
    #[error("essential task panicked: {0}")]
    TaskPanicked(String),
}

/// The supervised set: each task returns its name when it ends, and runs until `shutdown` is
/// cancelled. Dropping it cancels `shutdown` and aborts what still runs.
#[derive(Debug, Default)]
pub(crate) struct Supervisor {
    pub shutdown: CancellationToken,
    pub tasks: JoinSet<&'static str>,
}

impl Supervisor {
    /// Waits for the first task to end: each runs until shutdown, so any end is a failure.
    /// Errors: [`RunError`].
    pub async fn wait(&mut self) -> Result<(), RunError> {
        match self.tasks.join_next().await {
            None => Ok(()),
            Some(Ok(name)) => Err(RunError::TaskStopped(name)),
            Some(Err(e)) => Err(RunError::TaskPanicked(e.to_string())),
        }
    }

    /// Cancels `shutdown` and waits up to [`SHUTDOWN_LIMIT`] for every task to end; the rest
    /// are aborted when `self` drops.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        let drained = tokio::time::timeout(SHUTDOWN_LIMIT, async { while self.tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("tasks did not stop in time; aborting them");
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.tasks.abort_all();
    }
}
