#![no_main]
//! FLV tag bodies, legacy and Enhanced RTMP, and the codec configuration records they carry
//! (AVCDecoderConfigurationRecord + H.264 SPS, AV1CodecConfigurationRecord + sequence header,
//! AudioSpecificConfig): must never panic, whatever the bytes. HEVC records also have their own
//! target (`hevc_config`).
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use onair_flv::{parse_audio, parse_video, AudioTag, VideoCodec, VideoTag};
use onair_media::avc::{annexb_nal_units, avcc_nal_units};
use onair_media::{AacConfig, Av1Config, AvcConfig, HevcConfig};

#[path = "known_panics.rs"]
mod known_panics;

fuzz_target!(|data: &[u8]| {
    known_panics::tolerate_known_third_party_panic();
    let body = Bytes::copy_from_slice(data);
    match parse_video(&body) {
        Ok(VideoTag::SequenceHeader { codec: VideoCodec::Avc, record }) => {
            let _ = AvcConfig::parse(&record);
        }
        Ok(VideoTag::SequenceHeader { codec: VideoCodec::Hevc, record }) => {
            let _ = HevcConfig::parse(&record);
        }
        Ok(VideoTag::SequenceHeader { codec: VideoCodec::Av1, record }) => {
            let _ = Av1Config::parse(&record);
        }
        Ok(VideoTag::Frame { codec: VideoCodec::Av1, data, .. }) => {
            let _ = onair_media::av1::strip_temporal_delimiters(&data);
        }
        Ok(VideoTag::Frame { codec: VideoCodec::Vp9, data, .. }) => {
            let _ = onair_media::vp9::keyframe_size(&data);
        }
        Ok(VideoTag::SequenceHeader { codec: VideoCodec::Vp9, record }) => {
            let _ = onair_media::Vp9Config::parse(&record, data);
        }
        Ok(VideoTag::Frame { data, .. }) => {
            let _ = avcc_nal_units(&data, 4);
        }
        _ => {}
    }
    if let Ok(AudioTag::AacSequenceHeader(asc)) = parse_audio(&body) {
        let _ = AacConfig::parse(&asc);
    }
    let _ = AvcConfig::parse(data);
    let _ = Av1Config::parse(data);
    let _ = AacConfig::parse(data);
    let _ = annexb_nal_units(data);
});
