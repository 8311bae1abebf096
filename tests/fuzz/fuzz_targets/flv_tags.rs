#![no_main]
//! FLV tag bodies and the codec configuration records they carry (AVCDecoderConfigurationRecord,
//! AudioSpecificConfig, H.264 SPS): must never panic, whatever the bytes.
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use onair_flv::{parse_audio, parse_video, AudioTag, VideoTag};
use onair_media::avc::{annexb_nal_units, avcc_nal_units};
use onair_media::{AacConfig, AvcConfig};

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    if let Ok(VideoTag::AvcSequenceHeader(rec)) = parse_video(&body) {
        let _ = AvcConfig::parse(&rec);
    }
    if let Ok(VideoTag::AvcNalus { data, .. }) = parse_video(&body) {
        let _ = avcc_nal_units(&data, 4);
    }
    if let Ok(AudioTag::AacSequenceHeader(asc)) = parse_audio(&body) {
        let _ = AacConfig::parse(&asc);
    }
    let _ = AvcConfig::parse(data);
    let _ = AacConfig::parse(data);
    let _ = annexb_nal_units(data);
});
