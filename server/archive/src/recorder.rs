//! The store side of the recorder: it wakes on the store's changes, follows every rendition of
//! every broadcast published here (never a relayed one), and queues each segment the moment it
//! closes. It only reads the store (shared `Bytes`), so the live path never waits for it; the
//! queue to the disk is bounded, and a segment that left memory before its turn is recorded as a gap.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use onair_store::{Broadcast, Phase, Rendition, SegmentRef, Store};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::index::RenditionRow;
use crate::record::SegmentMeta;
use crate::writer::{Job, SegmentJob};

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Follows the store until `stop`; every broadcast's jobs go to `jobs`.
pub(crate) async fn run(store: Arc<Store>, jobs: mpsc::Sender<Job>, stop: CancellationToken) {
    let mut changes = store.subscribe_changes();
    let mut seen: HashMap<usize, Weak<Broadcast>> = HashMap::new();
    let mut tasks = JoinSet::new();
    loop {
        seen.retain(|_, w| w.strong_count() > 0);
        for b in store.broadcasts() {
            let key = Arc::as_ptr(&b) as usize;
            if b.is_relayed() || seen.contains_key(&key) {
                continue;
            }
            seen.insert(key, Arc::downgrade(&b));
            tasks.spawn(record_broadcast(b, store.subscribe_changes(), jobs.clone(), stop.clone()));
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = changes.changed() => if changed.is_err() { break },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tasks.shutdown().await;
}

/// Records one broadcast: a follower per rendition (new ones as they appear), then, once it
/// ended and every follower queued its last segment, the end.
async fn record_broadcast(b: Arc<Broadcast>, mut changes: tokio::sync::watch::Receiver<u64>, jobs: mpsc::Sender<Job>, stop: CancellationToken) {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let channel = b.channel().to_string();
    tracing::info!(channel, broadcast = id, "recording");
    if jobs.send(Job::Broadcast { id: id.clone(), channel: channel.clone(), started_ms: ms(b.started()) }).await.is_err() {
        return;
    }
    let mut state = b.subscribe_state();
    let mut followers = JoinSet::new();
    let mut following: Vec<u64> = Vec::new();
    loop {
        for r in b.renditions() {
            if following.contains(&r.id()) {
                continue;
            }
            following.push(r.id());
            let info = r.info();
            let row = RenditionRow {
                name: info.name.clone(),
                is_video: info.is_video,
                codec: info.codec.clone(),
                resolution: info.resolution,
                frame_rate: info.frame_rate,
                channels: info.channels,
            };
            if jobs.send(Job::Rendition { broadcast: id.clone(), row }).await.is_err() {
                return;
            }
            followers.spawn(follow(r, id.clone(), channel.clone(), jobs.clone(), stop.clone()));
        }
        if matches!(state.borrow().phase, Phase::Ended(_)) {
            break;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = changes.changed() => {}
            changed = state.changed() => if changed.is_err() { break },
        }
    }
    while followers.join_next().await.is_some() {}
    let _ = jobs.send(Job::End { broadcast: id }).await;
}

/// Queues every complete segment of `r` in order until the rendition ends or goes away.
async fn follow(r: Arc<Rendition>, broadcast: String, channel: String, jobs: mpsc::Sender<Job>, stop: CancellationToken) {
    let mut watcher = r.subscribe();
    let mut last: Option<u64> = None;
    let mut skipped = false;
    loop {
        while let Some(seg) = r.next_complete_segment(last) {
            let gap = skipped || last.is_some_and(|l| seg.msn != l + 1);
            if gap {
                metrics::counter!("onair_archive_gaps_total").increment(1);
                tracing::warn!(channel, rendition = r.name(), from = last.map_or(0, |l| l + 1), to = seg.msn, "segments left memory before the archive took them: recorded as a gap");
            }
            last = Some(seg.msn);
            let Some(job) = segment_job(&r, &broadcast, &channel, seg, gap) else {
                skipped = true;
                continue;
            };
            skipped = false;
            tokio::select! {
                _ = stop.cancelled() => return,
                sent = jobs.send(Job::Segment(Box::new(job))) => if sent.is_err() { return },
            }
        }
        let moved = |p: &onair_store::Position| p.ended || p.last_complete_msn.is_some_and(|m| last.is_none_or(|l| m > l));
        let pos = tokio::select! {
            _ = stop.cancelled() => return,
            pos = watcher.wait_for(moved) => pos,
        };
        match pos {
            Some(p) if p.ended && r.next_complete_segment(last).is_none() => return,
            Some(_) => {}
            None => return,
        }
    }
}

fn segment_job(r: &Rendition, broadcast: &str, channel: &str, seg: SegmentRef, gap: bool) -> Option<SegmentJob> {
    let Some(init) = r.init_segment(seg.init_id) else {
        metrics::counter!("onair_archive_gaps_total").increment(1);
        tracing::warn!(channel, rendition = r.name(), msn = seg.msn, init = seg.init_id, "init segment gone before the archive took the segment: skipped");
        return None;
    };
    let timescale = u128::from(r.info().timescale.max(1));
    let us = |ticks: u64| (u128::from(ticks) * 1_000_000 / timescale) as i64;
    // Each part's µs as differences of the rounded running total: they add up to the segment's.
    let mut total = 0;
    let durations = seg.part_durations.iter().map(|&d| {
        let before = us(total);
        total += d;
        us(total) - before
    });
    let parts: Vec<(bytes::Bytes, i64)> = seg.parts.iter().cloned().zip(durations).collect();
    let meta = SegmentMeta::new(seg.msn, ms(seg.program_date_time), seg.discontinuity, gap, &parts);
    Some(SegmentJob { broadcast: broadcast.into(), channel: channel.into(), rendition: r.name().into(), init_id: seg.init_id, init, meta, parts: seg.parts })
}
