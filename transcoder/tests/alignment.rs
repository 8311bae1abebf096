//! Real frames through the real pipeline: an H.264 stream made by the ffmpeg CLI (x264, key frame
//! every second) is transcoded to two rungs; every rung's key frames must sit at exactly the
//! source's key frame times, at the planned sizes.

use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use onair_media::avc::{annexb_nal_units, nal_type, to_avcc};
use onair_media::{AvcConfig, Frame};
use onair_transcoder::{plan_ladder, EncoderSettings, Output, Rung, Transcoder};

/// 4 s of 1280x720 25 fps test pattern, key frame every 25 frames, AUDs between access units.
fn source_stream() -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-t", "4"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-bf", "0", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0"])
        .args(["-bsf:v", "h264_metadata=aud=insert", "-f", "h264", "-"])
        .output()
        .expect("ffmpeg must be installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn rungs_have_key_frames_exactly_where_the_source_has_them() {
    let stream = source_stream();
    let units = annexb_nal_units(&stream);
    let sps = units.iter().find(|u| u[0] & 0x1f == nal_type::SPS).expect("sps");
    let pps = units.iter().find(|u| u[0] & 0x1f == nal_type::PPS).expect("pps");
    let source = AvcConfig::from_parameter_sets(sps, pps).expect("config");
    assert_eq!((source.width, source.height), (1280, 720));

    // Access units: split on AUD.
    let mut frames = Vec::new();
    let mut current: Vec<&[u8]> = Vec::new();
    for u in units.iter().copied() {
        let t = u[0] & 0x1f;
        if t == nal_type::AUD && !current.is_empty() {
            frames.push(std::mem::take(&mut current));
        } else if !matches!(t, nal_type::AUD | nal_type::SPS | nal_type::PPS) {
            current.push(u);
        }
    }
    frames.push(current);
    assert_eq!(frames.len(), 100);

    let ladder = plan_ladder(&Rung::default_ladder(), source.width, source.height, false);
    assert_eq!(ladder.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), vec!["480p", "360p"]);
    let (tx, rx) = mpsc::channel();
    // A queue larger than the stream and no lag limit: this test checks alignment, not shedding.
    let settings = EncoderSettings { max_lag: Duration::from_secs(600), queue_frames: 200, ..Default::default() };
    let mut t = Transcoder::start(&onair_media::TrackConfig::Avc(source.clone()), ladder, settings, move |o| {
        let _ = tx.send(o);
    })
    .expect("start");
    let mut source_keys = Vec::new();
    for (n, units) in frames.iter().enumerate() {
        let keyframe = units.iter().any(|u| u[0] & 0x1f == nal_type::IDR);
        let dts = n as u64 * 3600;
        if keyframe {
            source_keys.push(dts as i64);
        }
        let f = Frame { dts, cts_offset: 0, keyframe, data: to_avcc(units).into(), received: Instant::now() };
        assert!(t.push(&f), "frame {n} dropped");
    }
    t.finish();
    assert_eq!(source_keys, vec![0, 90_000, 180_000, 270_000]);

    let mut configs = vec![None, None];
    let mut keys = [Vec::new(), Vec::new()];
    let mut counts = [0usize; 2];
    for o in rx.try_iter() {
        match o {
            Output::Config { rung, config } => configs[rung] = Some((config.width, config.height)),
            Output::Frame { rung, frame } => {
                counts[rung] += 1;
                if frame.keyframe {
                    keys[rung].push(frame.dts as i64 + i64::from(frame.cts_offset));
                }
                assert_eq!(frame.cts_offset, 0, "no B-frames in rungs");
            }
            Output::Failed { rung, error } => panic!("rung {rung} failed: {error}"),
        }
    }
    assert_eq!(configs, [Some((854, 480)), Some((640, 360))]);
    for rung in 0..2 {
        assert_eq!(keys[rung], source_keys, "rung {rung} key frames");
        assert_eq!(counts[rung], 100, "rung {rung} frame count");
    }
}
