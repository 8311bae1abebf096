//! One publisher per stream key across the cluster: before a publisher is admitted here the node
//! takes the channel's publish lease in the registry (`onair_cluster::Registry::acquire`, a fencing
//! epoch bumped for every new holder); [`ClusterLease::keep`] renews it every third of its ttl
//! while the broadcast is live here and releases it the moment the publisher leaves (within
//! [`CHECK_EVERY`]), so a publisher reconnecting to another ingest node during the reconnect grace
//! period (OBS's backup server) is taken at once, and after a kill -9 of this node the lease
//! expires `cluster.entry_ttl_ms` after its last renewal. A lease found taken by another node on
//! renewal (a Redis that restarted empty and another node that took the key meanwhile) stops the
//! local publisher: two nodes never both publish one key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use onair_cluster::{Lease, Registry};
use onair_ingest::gate::{LeaseRefusal, PublishLease};
use onair_store::Store;
use tokio_util::sync::CancellationToken;

/// How often held leases are checked against the store (release latency), ms.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: u64,
    /// When taken: a lease younger than [`ADMISSION`] is kept though its broadcast is not live
    /// yet (the publisher is being admitted).
    taken: Instant,
    renewed: Instant,
}

/// Time a publisher has between its lease being taken and its broadcast being live.
const ADMISSION: Duration = Duration::from_secs(2);

/// The publish leases this node holds.
#[derive(Debug)]
pub struct ClusterLease {
    registry: Arc<Registry>,
    node: String,
    ttl: Duration,
    store: Arc<Store>,
    held: Mutex<HashMap<String, Held>>,
}

impl ClusterLease {
    /// Leases for node `node` in `registry`, each valid `ttl` after its last renewal.
    pub fn new(registry: Arc<Registry>, node: String, ttl: Duration, store: Arc<Store>) -> Arc<Self> {
        Arc::new(ClusterLease { registry, node, ttl, store, held: Mutex::new(HashMap::new()) })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Renews and releases the held leases until `stop`, then releases them all.
    pub async fn keep(&self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        while stop.run_until_cancelled(tick.tick()).await.is_some() {
            let leases: Vec<(String, Held)> = self.held().iter().map(|(c, h)| (c.clone(), *h)).collect();
            for (channel, held) in leases {
                if !self.store.get(&channel).is_some_and(|b| b.is_live()) && held.taken.elapsed() >= ADMISSION {
                    self.release(&channel, held.epoch).await;
                } else if held.renewed.elapsed() >= self.ttl / 3 {
                    self.renew(&channel, held.epoch).await;
                }
            }
        }
        let leases: Vec<(String, Held)> = self.held().drain().collect();
        for (channel, held) in leases {
            let _ = self.registry.release(&channel, &self.node, held.epoch).await;
        }
    }

    async fn release(&self, channel: &str, epoch: u64) {
        self.held().remove(channel);
        match self.registry.release(channel, &self.node, epoch).await {
            Ok(()) => tracing::info!(channel, epoch, "publisher left; publish lease released"),
            // It expires by itself within the ttl.
            Err(e) => tracing::warn!(channel, error = %e, "cannot release the publish lease; it expires by itself"),
        }
    }

    async fn renew(&self, channel: &str, epoch: u64) {
        match self.registry.renew(channel, &self.node, epoch, self.ttl).await {
            Ok(true) => {
                if let Some(h) = self.held().get_mut(channel) {
                    h.renewed = Instant::now();
                }
            }
            Ok(false) => {
                self.held().remove(channel);
                metrics::counter!("onair_lease_lost_total").increment(1);
                tracing::error!(channel, epoch, "publish lease taken by another node; stopping the publisher here");
                // Take the broadcast over from the local publisher (its writes are refused from
                // now on) and leave it interrupted: it ends after the grace period.
                if let Ok(session) = self.store.start(channel, true) {
                    session.interrupt();
                }
            }
            Err(e) => {
                // The registry is down: nobody else can take the lease either; keep publishing.
                metrics::counter!("onair_registry_errors_total", "kind" => "lease").increment(1);
                tracing::warn!(channel, error = %e, "cannot renew the publish lease; retrying");
            }
        }
    }
}

impl PublishLease for ClusterLease {
    fn acquire<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), LeaseRefusal>> {
        Box::pin(async move {
            match self.registry.acquire(channel, &self.node, self.ttl).await {
                Ok(Lease::Held(epoch)) => {
                    let now = Instant::now();
                    self.held().insert(channel.to_string(), Held { epoch, taken: now, renewed: now });
                    tracing::info!(channel, epoch, node = %self.node, "publish lease taken");
                    Ok(())
                }
                Ok(Lease::HeldBy(node)) => Err(LeaseRefusal::HeldBy(node)),
                Err(e) => {
                    metrics::counter!("onair_registry_errors_total", "kind" => "lease").increment(1);
                    tracing::warn!(channel, error = %e, "cannot take the publish lease");
                    Err(LeaseRefusal::Unavailable)
                }
            }
        })
    }
}
