//! The store through its public API: lifecycle, single writers, numbering, bounds.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::*;

fn info(name: &str) -> RenditionInfo {
    RenditionInfo {
        name: name.into(),
        is_video: true,
        codec: "avc1.64001f".into(),
        resolution: Some((1280, 720)),
        frame_rate: Some(25.0),
        channels: None,
        nominal_bitrate: None,
        timescale: 90_000,
    }
}

fn store(window: usize) -> Store {
    Store::new(TimelineConfig { window_segments: window, ..Default::default() })
}

fn part(duration: u64, independent: bool, byte: u8) -> NewPart {
    NewPart { program_date_time: SystemTime::now(), duration, independent, data: Bytes::from(vec![byte; 10]), produced_at: SystemTime::now() }
}

fn next(starts_segment: bool) -> Placement {
    Placement::Next { starts_segment }
}

#[test]
fn one_live_broadcast_per_channel() {
    let store = store(12);
    let s = store.start("demo", false).expect("start");
    assert_eq!(s.id(), 1);
    assert_eq!(store.start("demo", false).err(), Some(StoreError::AlreadyLive("demo".into())));
    assert_eq!(store.live_count(), 1);
    assert!(s.end());
    assert_eq!(store.live_count(), 0);
    let s2 = store.start("demo", false).expect("restart after end");
    assert!(s2.broadcast().is_live() && !Arc::ptr_eq(s.broadcast(), s2.broadcast()));
    s2.end();
    store.sweep(Duration::ZERO, Duration::ZERO);
    assert!(store.get("demo").is_none());
}

#[test]
fn a_publisher_here_replaces_a_relayed_copy() {
    let store = store(12);
    let relayed = store.start_relayed("demo").expect("relay");
    assert!(relayed.broadcast().is_relayed());
    assert_eq!(store.start_relayed("demo").err(), Some(StoreError::AlreadyLive("demo".into())), "one relayed copy");
    let local = store.start("demo", false).expect("a local publisher takes the channel");
    assert!(!local.broadcast().is_relayed() && !Arc::ptr_eq(relayed.broadcast(), local.broadcast()));
    assert!(store.get("demo").is_some_and(|b| Arc::ptr_eq(&b, local.broadcast())));
    // The relay's session no longer owns what the store holds: releasing it removes nothing.
    assert!(!store.release(relayed));
    assert!(store.get("demo").is_some_and(|b| !b.is_relayed()));
    assert_eq!(store.start_relayed("demo").err(), Some(StoreError::AlreadyLive("demo".into())), "a relay never replaces a local publisher");
}

#[test]
fn interrupted_broadcast_resumes_or_ends_after_grace() {
    let store = store(12);
    let s1 = store.start("demo", false).expect("start");
    let b = s1.broadcast().clone();
    assert!(s1.interrupt());
    assert!(b.is_interrupted() && !b.is_live());
    assert_eq!(store.live_count(), 0);
    let s2 = store.start("demo", false).expect("resume");
    assert!(Arc::ptr_eq(&b, s2.broadcast()) && b.is_live() && s2.id() == 2);
    let mut watcher = b.subscribe_state();
    watcher.mark_unchanged();
    let s3 = store.start("demo", true).expect("takeover");
    assert_eq!(s3.id(), 3);
    assert!(watcher.has_changed().unwrap_or(false));
    assert!(!s2.owns() && s3.owns());
    // The taken-over session can neither end nor interrupt the broadcast.
    assert!(!s2.end() && !s2.interrupt() && b.is_live());
    drop(s2);
    assert!(b.is_live(), "dropping a stale session does nothing");
    drop(s3);
    assert!(b.is_interrupted(), "dropping the owner interrupts");
    assert!(store.sweep(Duration::from_secs(60), Duration::from_secs(60)).is_empty());
    assert_eq!(store.sweep(Duration::ZERO, Duration::from_secs(60)), vec!["demo".to_string()]);
    assert!(b.is_ended());
    let fresh = store.start("demo", false).expect("new broadcast");
    assert!(!Arc::ptr_eq(&b, fresh.broadcast()));
}

/// The old session's "end or interrupt" racing a resume: the resumed broadcast stays live, whatever
/// the interleaving (a check followed by a separate change would let the old session win sometimes).
#[test]
fn a_stale_session_never_ends_a_resumed_broadcast() {
    for round in 0..500 {
        let store = Arc::new(store(12));
        let s1 = store.start("demo", false).expect("start");
        s1.interrupt();
        let store2 = store.clone();
        let resumer = std::thread::spawn(move || store2.start("demo", false).expect("resume"));
        let ended = if round % 2 == 0 { s1.end() } else { s1.interrupt() };
        let s2 = resumer.join().expect("join");
        let b = s2.broadcast();
        if ended && round % 2 == 0 {
            // s1 ended the broadcast before the resume: the resume started a fresh one.
            assert!(!Arc::ptr_eq(b, s1.broadcast()));
        }
        assert!(b.is_live(), "round {round}: the resumed broadcast must stay live");
        assert!(s2.owns());
        drop(s1);
        assert!(b.is_live(), "round {round}: dropping the stale session must not interrupt");
    }
}

#[test]
fn parts_segments_and_positions() {
    let store = store(3);
    let s = store.start("demo", false).expect("start");
    let w = s.writer(info("source"), Bytes::from_static(b"init")).expect("writer");
    let r = w.rendition().clone();
    assert_eq!(r.position().last_msn, None);
    for i in 0..12u64 {
        assert_eq!(w.append(next(i % 5 == 0), part(18_000, i % 5 == 0, i as u8)), Ok(i));
    }
    let pos = r.position();
    assert_eq!((pos.last_msn, pos.last_part, pos.next_part_id), (Some(2), 1, 12));
    let p = r.part(7).expect("part 7");
    assert_eq!((p.msn, p.index, p.data[0]), (1, 2, 7));
    assert!(r.part(12).is_none());
    assert_eq!(r.segment(1).expect("segment 1").parts.len(), 5);
    assert!(r.segment(2).is_none(), "open segment is not served whole");
    let snap = r.snapshot();
    assert_eq!(snap.segments.len(), 3);
    assert!((snap.segments[0].duration - 1.0).abs() < 1e-9);
    assert_eq!(snap.target_duration, 2);
    s.end();
    assert!(r.position().ended);
    assert!(r.segment(2).is_some());
    assert_eq!(w.append(next(false), part(1, false, 0)), Err(WriteError::Ended));
}

#[test]
fn window_evicts_but_keeps_parts_downloadable() {
    let store = store(2);
    let s = store.start("demo", false).expect("start");
    let w = s.writer(info("source"), Bytes::from_static(b"init")).expect("writer");
    for i in 0..10u64 {
        w.append(next(true), part(90_000, true, 0)).expect("append");
        assert!(w.rendition().snapshot().segments.len() <= 2, "after {i}");
    }
    // Evicted from the playlist a moment ago: still downloadable (3 x TD has not passed).
    assert!(w.rendition().part(0).is_some());
    assert_eq!(w.rendition().snapshot().segments.first().map(|s| s.msn), Some(8));
}

#[test]
fn bytes_held_counts_init_segments_and_downloadable_parts() {
    let store = store(2);
    let s = store.start("demo", false).expect("start");
    let video = s.writer(info("source"), Bytes::from_static(b"init")).expect("writer");
    let audio = s.writer(info("audio"), Bytes::from_static(b"mp4a")).expect("writer");
    assert_eq!(video.rendition().bytes_held(), 4);
    for _ in 0..5u64 {
        video.append(next(true), part(90_000, true, 0)).expect("append");
    }
    audio.append(next(true), part(90_000, true, 0)).expect("append");
    // Parts that left the window a moment ago are still downloadable, so still held.
    assert_eq!(video.rendition().bytes_held(), 4 + 5 * 10);
    assert_eq!(store.get("demo").expect("broadcast").bytes_held(), 4 + 5 * 10 + 4 + 10);
}

#[test]
fn reconfigure_continues_numbering_after_a_discontinuity_with_stable_init_ids() {
    let store = store(10);
    let s = store.start("demo", false).expect("start");
    let w = s.writer(info("source"), Bytes::from_static(b"init")).expect("writer");
    let r = w.rendition().clone();
    w.append(next(true), part(90_000, true, 0)).expect("a");
    w.append(next(false), part(90_000, false, 0)).expect("b");
    let mut smaller = info("source");
    smaller.resolution = Some((640, 360));
    assert_eq!(w.reconfigure(smaller, Bytes::from_static(b"init2")), Ok(1));
    assert!(r.segment(0).is_some(), "the interrupted segment is complete");
    w.append(next(true), part(90_000, true, 0)).expect("c");
    let snap = r.snapshot();
    let shape: Vec<_> = snap.segments.iter().map(|s| (s.msn, s.discontinuity, s.init_id)).collect();
    assert_eq!(shape, vec![(0, false, 0), (1, true, 1)]);
    assert_eq!(snap.discontinuity_sequence, 0);
    assert_eq!(r.init_segment(1).as_deref(), Some(&b"init2"[..]));
    assert_eq!(r.info().resolution, Some((640, 360)));
    assert_eq!(r.part(2).map(|p| (p.msn, p.index)), Some((1, 0)));
    // Back to the first configuration: its id is reused, not a new version.
    assert_eq!(w.reconfigure(info("source"), Bytes::from_static(b"init")), Ok(0));
    w.append(next(true), part(90_000, true, 0)).expect("d");
    assert_eq!(r.snapshot().segments.last().map(|s| (s.discontinuity, s.init_id)), Some((true, 0)));
}

#[test]
fn init_segments_are_bounded() {
    let store = store(3);
    let s = store.start("demo", false).expect("start");
    let w = s.writer(info("source"), Bytes::from_static(b"init")).expect("writer");
    for i in 0..50u32 {
        let id = w.reconfigure(info("source"), Bytes::from(i.to_be_bytes().to_vec())).expect("reconfigure");
        w.append(next(true), part(90_000, true, 0)).expect("append");
        assert_eq!(w.rendition().init_segment(id).as_deref(), Some(&i.to_be_bytes()[..]));
    }
    let held = (0..=51u64).filter(|id| w.rendition().init_segment(*id).is_some()).count();
    assert_eq!(held, MAX_INIT_SEGMENTS);
}

#[test]
fn segments_longer_than_the_bound_are_refused() {
    let store = Store::new(TimelineConfig { max_segment: Duration::from_secs(4), ..Default::default() });
    let s = store.start("demo", false).expect("start");
    let w = s.writer(info("source"), Bytes::from_static(b"init")).expect("writer");
    w.append(next(true), part(90_000, true, 0)).expect("1 s");
    for _ in 0..3 {
        w.append(next(false), part(90_000, false, 0)).expect("up to 4 s");
    }
    assert_eq!(w.append(next(false), part(1, false, 0)), Err(WriteError::SegmentTooLong { max_ms: 4000 }));
    assert_eq!(w.rendition().target_duration(), 4);
    w.append(next(true), part(90_000, true, 0)).expect("a new segment is fine");
}

#[test]
fn long_gop_raises_target_duration() {
    let store = store(5);
    let s = store.start("demo", false).expect("start");
    let w = s.writer(info("source"), Bytes::from_static(b"init")).expect("writer");
    w.append(next(true), part(90_000 * 5, true, 0)).expect("append");
    w.append(next(false), part(90_000 / 4, false, 0)).expect("append");
    assert_eq!(w.rendition().target_duration(), 5);
}

#[test]
fn one_writer_per_rendition_bound_to_its_session() {
    let store = store(12);
    let s1 = store.start("demo", false).expect("start");
    let w1 = s1.writer(info("source"), Bytes::from_static(b"init")).expect("writer");
    assert_eq!(s1.writer(info("source"), Bytes::from_static(b"init")).err(), Some(WriteError::Claimed("source".into())));
    w1.append(next(true), part(18_000, true, 1)).expect("append");
    let r = w1.rendition().clone();
    // A takeover: the old writer is refused from then on, and its drop leaves the rendition alone.
    let s2 = store.start("demo", true).expect("takeover");
    assert_eq!(w1.append(next(false), part(18_000, false, 2)), Err(WriteError::NotOwner));
    let w2 = s2.writer(info("source"), Bytes::from_static(b"init")).expect("new session's writer");
    w2.append(next(true), part(18_000, true, 3)).expect("append");
    drop(w1);
    assert!(r.snapshot().segments.last().is_some_and(|s| !s.complete), "a stale writer's drop does nothing");
    // Dropping the live writer interrupts the rendition: the open segment closes.
    drop(w2);
    let snap = r.snapshot();
    assert!(snap.segments.last().is_some_and(|s| s.complete) && !snap.ended);
    let w3 = s2.writer(info("source"), Bytes::from_static(b"init")).expect("claim again");
    w3.append(next(false), part(18_000, true, 4)).expect("append");
    assert!(r.snapshot().segments.last().is_some_and(|s| s.discontinuity), "continues after a discontinuity");
    // The stale session cannot claim writers.
    assert_eq!(s1.writer(info("audio"), Bytes::new()).err(), Some(WriteError::NotOwner));
    // A removed rendition is gone from the broadcast and ended.
    w3.remove();
    assert!(s2.broadcast().rendition("source").is_none() && r.position().ended);
}

#[test]
fn imported_numbering_mirrors_the_upstream() {
    let store = store(12);
    let s = store.start("relayed", false).expect("start");
    let w = s.reference().import_writer(info("source"), 3, Bytes::from_static(b"up-init3")).expect("writer");
    let at = |msn, part_id, discontinuity, discontinuity_sequence| Placement::At { msn, part_id, discontinuity, discontinuity_sequence };
    assert!(w.rendition().init_segment(0).is_none(), "only the upstream's init ids exist");
    // Joining mid-stream: segment 500, parts from 2_000, three discontinuities already upstream.
    assert_eq!(w.append(at(500, 2_000, false, 3), part(18_000, true, 0)), Ok(2_000));
    assert_eq!(w.append(at(500, 2_001, false, 3), part(18_000, false, 0)), Ok(2_001));
    assert!(matches!(w.append(at(500, 2_003, false, 3), part(1, false, 0)), Err(WriteError::Numbering { .. })));
    assert!(matches!(w.append(at(499, 2_002, false, 3), part(1, true, 0)), Err(WriteError::Numbering { .. })));
    assert_eq!(w.append(at(501, 2_002, false, 3), part(18_000, true, 0)), Ok(2_002));
    assert_eq!(w.append(at(502, 2_003, true, 4), part(18_000, true, 0)), Ok(2_003));
    let snap = w.rendition().snapshot();
    let shape: Vec<_> = snap.segments.iter().map(|s| (s.msn, s.first_part_id, s.discontinuity, s.init_id)).collect();
    assert_eq!(shape, vec![(500, 2_000, false, 3), (501, 2_002, false, 3), (502, 2_003, true, 3)]);
    assert_eq!((snap.discontinuity_sequence, snap.next_part_id), (3, 2_004));
    assert_eq!(w.rendition().init_segment(3).as_deref(), Some(&b"up-init3"[..]));
    assert!(w.rendition().segment(501).is_some() && w.rendition().segment(502).is_none());
    // The upstream restarted elsewhere (or the relay fell behind): segments are missing, so the
    // window restarts at the new number and the playlist stays consecutively numbered.
    assert_eq!(w.append(at(900, 7_000, true, 5), part(18_000, true, 0)), Ok(7_000));
    let snap = w.rendition().snapshot();
    assert_eq!(snap.segments.iter().map(|s| s.msn).collect::<Vec<_>>(), vec![900]);
    assert_eq!(snap.discontinuity_sequence, 4);
    assert!(w.rendition().part(2_000).is_none());
}

#[test]
fn released_broadcast_leaves_the_store_without_ending() {
    let store = store(12);
    let s = store.start("relayed", false).expect("start");
    let w = s.writer(info("source"), Bytes::from_static(b"init")).expect("writer");
    w.append(next(true), part(18_000, true, 0)).expect("append");
    let r = w.rendition().clone();
    drop(w);
    assert!(store.release(s));
    assert!(store.get("relayed").is_none());
    assert!(!r.position().ended, "a released broadcast did not end: no EXT-X-ENDLIST");
    // A stale session cannot release its successor.
    let s1 = store.start("x", false).expect("start");
    let s2 = store.start("x", true).expect("takeover");
    assert!(!store.release(s1));
    assert!(store.get("x").is_some());
    assert!(store.release(s2));
}

#[test]
fn discontinuity_sequence_counts_evicted_tags() {
    let store = store(3);
    let s = store.start("demo", false).expect("start");
    let w = s.writer(info("source"), Bytes::from_static(b"init")).expect("writer");
    for i in 0..8u64 {
        if i % 2 == 1 {
            w.reconfigure(info("source"), Bytes::from_static(b"init")).expect("reconfigure");
        }
        w.append(next(true), part(90_000, true, 0)).expect("append");
    }
    // Segments 5, 6, 7 are listed; tags before segments 1, 3 and 5, so the listed segment 5 has
    // its own tag and the playlist starts at sequence 2.
    let snap = w.rendition().snapshot();
    assert_eq!(snap.segments.iter().map(|s| (s.msn, s.discontinuity)).collect::<Vec<_>>(), vec![(5, true), (6, false), (7, true)]);
    assert_eq!(snap.discontinuity_sequence, 2);
}

#[tokio::test]
async fn waiters_wake_on_new_part() {
    let store = store(3);
    let s = store.start("demo", false).expect("start");
    let w = s.writer(info("source"), Bytes::from_static(b"init")).expect("writer");
    let mut watcher = w.rendition().subscribe();
    let waiter = tokio::spawn(async move { watcher.wait_for(|p| p.last_part == 1).await.map(|p| p.next_part_id) });
    w.append(next(true), part(1, true, 0)).expect("append");
    w.append(next(false), part(1, false, 0)).expect("append");
    assert_eq!(waiter.await.expect("join"), Some(2));
}
