//! Transcodes an H.264 Annex B file (access units separated by AUDs, no B-frames needed) through
//! the OnAir ladder as fast as possible and prints `frames seconds fps`. Used by
//! `tests/bench_transcode.sh`, which runs the ffmpeg CLI on the same input for comparison.
//!
//! Usage: cargo run --release -p onair-transcoder --example ladder_fps -- INPUT.h264 [preset]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onair_media::avc::{annexb_nal_units, nal_type, to_avcc};
use onair_media::{AvcConfig, Frame};
use onair_transcoder::{plan_ladder, EncoderSettings, Output, Rung, Transcoder};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: ladder_fps INPUT.h264 [preset]");
        std::process::exit(2);
    };
    let preset = args.get(2).cloned().unwrap_or_else(|| "veryfast".into());
    let stream = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let units = annexb_nal_units(&stream);
    let sps = units.iter().find(|u| u[0] & 0x1f == nal_type::SPS).expect("no SPS in input");
    let pps = units.iter().find(|u| u[0] & 0x1f == nal_type::PPS).expect("no PPS in input");
    let source = AvcConfig::from_parameter_sets(sps, pps).expect("bad parameter sets");
    let mut frames: Vec<Vec<&[u8]>> = Vec::new();
    let mut current = Vec::new();
    for u in units.iter().copied() {
        match u[0] & 0x1f {
            nal_type::AUD if !current.is_empty() => frames.push(std::mem::take(&mut current)),
            nal_type::AUD | nal_type::SPS | nal_type::PPS => {}
            _ => current.push(u),
        }
    }
    frames.push(current);
    let ladder = plan_ladder(&Rung::default_ladder(), source.width, source.height, false);
    let rungs: Vec<String> = ladder.iter().map(|r| format!("{}x{}", r.width, r.height)).collect();
    let encoded = Arc::new(AtomicUsize::new(0));
    let counter = encoded.clone();
    let settings = EncoderSettings { preset, max_lag: Duration::from_secs(3600), queue_frames: 8, ..Default::default() };
    let started = Instant::now();
    let mut t = Transcoder::start(&onair_media::TrackConfig::Avc(source.clone()), ladder, settings, move |o| {
        if matches!(o, Output::Frame { rung: 0, .. }) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    })
    .expect("start");
    let fps = source.frame_rate.unwrap_or(25.0);
    for (n, units) in frames.iter().enumerate() {
        let keyframe = units.iter().any(|u| u[0] & 0x1f == nal_type::IDR);
        let dts = (n as f64 * 90_000.0 / fps) as u64;
        let f = Frame { dts, cts_offset: 0, keyframe, data: to_avcc(units).into(), received: Instant::now() };
        // Offline benchmark: wait for room instead of dropping.
        assert!(t.push_wait(&f), "transcode thread stopped");
    }
    t.finish();
    let secs = started.elapsed().as_secs_f64();
    let n = encoded.load(Ordering::Relaxed);
    println!("{} {:.3} {:.1} {}", n, secs, n as f64 / secs, rungs.join(","));
}
