#![no_main]
//! HEVC parameter sets: an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3.1) and the SPS
//! inside it (ITU-T H.265 §7.3.2.2), as an Enhanced RTMP encoder sends them. Must never panic; a
//! record that parses must write back into an init segment that decodes again.
use libfuzzer_sys::fuzz_target;
use mp4_atom::{Any, Decode};
use onair_media::{HevcConfig, TrackConfig};

#[path = "known_panics.rs"]
mod known_panics;

fuzz_target!(|data: &[u8]| {
    known_panics::tolerate_known_third_party_panic();
    if let Ok(cfg) = HevcConfig::parse(data) {
        let _ = cfg.codec_string();
        let track = TrackConfig::Hevc(cfg);
        if let Ok(init) = onair_cmaf::init_segment(1, &track) {
            let mut buf = &init[..];
            while !buf.is_empty() {
                Any::decode(&mut buf).expect("our init segment decodes");
            }
        }
    }
});
