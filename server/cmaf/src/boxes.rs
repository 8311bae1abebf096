//! Box writers for CMAF tracks: one init segment per track and one `moof`+`mdat` per chunk.
//!
//! Layout follows ISO/IEC 23000-19 §7 (CMAF track) and ISO/IEC 14496-12: `tfhd` with
//! default-base-is-moof, `tfdt` version 1 (64-bit base media decode time), one `trun` with a
//! data offset and explicit per-sample duration, size, flags and composition offset.

use bytes::{BufMut, Bytes, BytesMut};
use mp4_atom::{
    Audio, Av01, Avc1, Dinf, Dref, Encode, Esds, Ftyp, Hdlr, Hvc1, Mdhd, Mdia, Mfhd, Minf, Moof, Moov, Mp4a, Mvex, Mvhd, Smhd,
    Stbl, Stco, Stsc, Stsd, Stsz, Stts, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun, TrunEntry, TrunSamples, Url, Visual, Vp09,
    Vmhd,
};
use onair_media::TrackConfig;

use crate::CmafError;

/// `sample_flags` of a sync sample: sample_depends_on = 2 (does not depend on others), ISO/IEC 14496-12 §8.8.3.1.
pub const FLAGS_SYNC: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample: sample_depends_on = 1, sample_is_non_sync_sample = 1.
pub const FLAGS_NON_SYNC: u32 = 0x0101_0000;

/// One sample of a chunk.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Duration in the track's timescale (90 kHz ticks for video, samples for audio).
    pub duration: u32,
    /// Composition offset (pts - dts) in the same ticks.
    pub cts_offset: i32,
    /// Sync sample (IDR / any AAC frame).
    pub keyframe: bool,
    /// Sample bytes: length-prefixed NAL units or one raw AAC frame.
    pub data: Bytes,
}

/// Writes the CMAF init segment (`ftyp` + `moov`) for a single-track rendition with track id `track_id`.
///
/// Errors: [`CmafError::Encode`] if a field is out of range for its box.
pub fn init_segment(track_id: u32, config: &TrackConfig) -> Result<Bytes, CmafError> {
    let ftyp = Ftyp {
        major_brand: b"iso6".into(),
        minor_version: 0,
        compatible_brands: vec![b"iso6".into(), b"cmfc".into(), b"mp41".into()],
    };
    let dinf = Dinf { dref: Dref { entries: vec![Url { location: String::new() }.into()] } };
    let empty_stbl = |codec: mp4_atom::Codec| Stbl {
        stsd: Stsd { codecs: vec![codec] },
        stts: Stts::default(),
        stsc: Stsc::default(),
        stsz: Stsz::default(),
        stco: Some(Stco::default()),
        ..Default::default()
    };
    let video_track = |(w, h): (u32, u32), sample_entry: &dyn Fn(Visual) -> mp4_atom::Codec| {
        let (w, h) = (clamp_u16(w), clamp_u16(h));
        let codec = sample_entry(Visual { data_reference_index: 1, width: w, height: h, ..Default::default() });
        let tkhd = Tkhd { track_id, enabled: true, in_movie: true, width: w.into(), height: h.into(), ..Default::default() };
        let minf = Minf { vmhd: Some(Vmhd::default()), dinf: dinf.clone(), stbl: empty_stbl(codec), ..Default::default() };
        (tkhd, b"vide", minf)
    };
    let (tkhd, handler, minf) = match config {
        TrackConfig::Avc(avc) => video_track((avc.width, avc.height), &|visual| {
            Avc1 { visual, avcc: avc.avcc.clone(), btrt: None, colr: None, pasp: None, taic: None, fiel: None, spatial: None }.into()
        }),
        TrackConfig::Hevc(hevc) => {
            video_track((hevc.width, hevc.height), &|visual| Hvc1 { visual, hvcc: hevc.hvcc.clone(), ..Default::default() }.into())
        }
        TrackConfig::Av1(av1) => {
            video_track((av1.width, av1.height), &|visual| Av01 { visual, av1c: av1.av1c.clone(), ..Default::default() }.into())
        }
        TrackConfig::Vp9(vp9) => {
            video_track((vp9.width, vp9.height), &|visual| Vp09 { visual, vpcc: vp9.vpcc.clone(), ..Default::default() }.into())
        }
        TrackConfig::Aac(aac) => {
            let codec = Mp4a {
                audio: Audio {
                    data_reference_index: 1,
                    channel_count: aac.channel_count(),
                    sample_size: 16,
                    sample_rate: clamp_u16(aac.sample_rate).into(),
                },
                esds: Esds {
                    es_desc: mp4_atom::esds::EsDescriptor {
                        es_id: track_id.min(u32::from(u16::MAX)) as u16,
                        depends_on_es_id: None,
                        url: None,
                        ocr_es_id: None,
                        stream_priority: 0,
                        dec_config: mp4_atom::esds::DecoderConfig {
                            object_type_indication: 0x40, // MPEG-4 Audio
                            stream_type: 5,              // AudioStream
                            up_stream: 0,
                            dec_specific: Some(mp4_atom::esds::DecoderSpecific {
                                profile: aac.object_type,
                                freq_index: 0,
                                chan_conf: aac.channels,
                                raw: aac.asc.to_vec(),
                            }),
                            ..Default::default()
                        },
                        sl_config: mp4_atom::esds::SLConfig {},
                    },
                },
                btrt: None,
                taic: None,
            };
            let tkhd = Tkhd { track_id, enabled: true, in_movie: true, volume: 1.into(), ..Default::default() };
            let minf = Minf { smhd: Some(Smhd::default()), dinf, stbl: empty_stbl(codec.into()), ..Default::default() };
            (tkhd, b"soun", minf)
        }
    };
    let moov = Moov {
        mvhd: Mvhd { timescale: 1000, rate: 1.into(), volume: 1.into(), next_track_id: track_id + 1, ..Default::default() },
        mvex: Some(Mvex {
            mehd: None,
            trex: vec![Trex { track_id, default_sample_description_index: 1, ..Default::default() }],
        }),
        trak: vec![Trak {
            tkhd,
            mdia: Mdia {
                mdhd: Mdhd { timescale: config.timescale(), language: "und".into(), ..Default::default() },
                hdlr: Hdlr { handler: handler.into(), name: "OnAir".into() },
                minf,
            },
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut out = Vec::new();
    ftyp.encode(&mut out)?;
    moov.encode(&mut out)?;
    Ok(Bytes::from(out))
}

/// Writes one CMAF chunk: `moof` (sequence number `sequence_number`, `tfdt` = `base_media_decode_time`
/// in track ticks) followed by an `mdat` holding `samples` back to back.
///
/// Errors: [`CmafError::TooLarge`] when the mdat would exceed 4 GiB; [`CmafError::Encode`].
pub fn fragment(
    sequence_number: u32,
    track_id: u32,
    base_media_decode_time: u64,
    samples: &[Sample],
) -> Result<Bytes, CmafError> {
    let mdat_payload: usize = samples.iter().map(|s| s.data.len()).sum();
    let mdat_size = u32::try_from(mdat_payload + 8).map_err(|_| CmafError::TooLarge("mdat over 4 GiB"))?;
    let entries = samples
        .iter()
        .map(|s| TrunEntry {
            duration: Some(s.duration),
            size: Some(s.data.len() as u32),
            flags: Some(if s.keyframe { FLAGS_SYNC } else { FLAGS_NON_SYNC }),
            cts: Some(i64::from(s.cts_offset)),
        })
        .collect();
    let mut moof = Moof {
        mfhd: Mfhd { sequence_number },
        traf: vec![Traf {
            tfhd: Tfhd { track_id, default_base_is_moof: true, ..Default::default() },
            tfdt: Some(Tfdt { base_media_decode_time }),
            trun: vec![Trun { data_offset: Some(0), samples: TrunSamples::Explicit(entries) }],
            ..Default::default()
        }],
    };
    let mut head = Vec::new();
    moof.encode(&mut head)?;
    // data_offset counts from the first byte of moof (default-base-is-moof) to the first sample.
    let data_offset = i32::try_from(head.len() + 8).map_err(|_| CmafError::TooLarge("moof over 2 GiB"))?;
    moof.traf[0].trun[0].data_offset = Some(data_offset);
    head.clear();
    moof.encode(&mut head)?;
    let mut out = BytesMut::with_capacity(head.len() + mdat_size as usize);
    out.put_slice(&head);
    out.put_u32(mdat_size);
    out.put_slice(b"mdat");
    for s in samples {
        out.put_slice(&s.data);
    }
    Ok(out.freeze())
}

fn clamp_u16(v: u32) -> u16 {
    v.min(u32::from(u16::MAX)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use onair_media::{AacConfig, AvcConfig, HevcConfig};


    /// Runs ffprobe (an independent reader) on `file` and returns (stream json, packets json).
    fn ffprobe(file: &[u8]) -> (serde_json::Value, Vec<serde_json::Value>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("track.mp4");
        std::fs::write(&path, file).expect("write");
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-print_format", "json", "-show_streams", "-show_packets"])
            .arg(&path)
            .output()
            .expect("ffprobe must be installed (infra/setup.sh installs it)");
        assert!(out.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        (v["streams"][0].clone(), v["packets"].as_array().cloned().unwrap_or_default())
    }

    #[test]
    fn ffprobe_reads_video_track() {
        let cfg = TrackConfig::Avc(AvcConfig::parse(onair_media::avc::SAMPLE_AVCC_720P).expect("avcc"));
        let mut file = init_segment(1, &cfg).expect("init").to_vec();
        // One length-prefixed NAL unit: IDR slice (type 5) or non-IDR slice (type 1).
        let sample = |key: bool, n: u8| {
            let mut data = vec![0, 0, 0, 96, if key { 0x65 } else { 0x41 }];
            data.extend_from_slice(&[n; 95]);
            Sample { duration: 3600, cts_offset: 7200, keyframe: key, data: Bytes::from(data) }
        };
        file.extend_from_slice(&fragment(1, 1, 90_000, &[sample(true, 1), sample(false, 2)]).expect("frag"));
        file.extend_from_slice(&fragment(2, 1, 97_200, &[sample(false, 3)]).expect("frag"));
        let (stream, packets) = ffprobe(&file);
        assert_eq!(stream["codec_name"], "h264");
        assert_eq!(stream["width"], 1280);
        assert_eq!(stream["height"], 720);
        assert_eq!(stream["time_base"], "1/90000");
        let dts: Vec<i64> = packets.iter().map(|p| p["dts"].as_i64().expect("dts")).collect();
        let pts: Vec<i64> = packets.iter().map(|p| p["pts"].as_i64().expect("pts")).collect();
        assert_eq!(dts, vec![90_000, 93_600, 97_200]);
        assert_eq!(pts, vec![97_200, 100_800, 104_400]);
        let flags: Vec<&str> = packets.iter().map(|p| p["flags"].as_str().expect("flags")).collect();
        assert!(flags[0].starts_with('K') && !flags[1].starts_with('K') && !flags[2].starts_with('K'));
        assert!(packets.iter().all(|p| p["size"] == "100"));
    }

    #[test]
    fn ffprobe_reads_hevc_track() {
        let cfg = TrackConfig::Hevc(HevcConfig::parse(onair_media::hevc::SAMPLE_HVCC_720P).expect("hvcc"));
        let mut file = init_segment(1, &cfg).expect("init").to_vec();
        // One length-prefixed NAL unit: IDR_W_RADL (type 19) or TRAIL_R (type 1), 2-byte NAL headers.
        let sample = |key: bool, n: u8| {
            let mut data = vec![0, 0, 0, 96, if key { 19 << 1 } else { 1 << 1 }, 1];
            data.extend_from_slice(&[n; 94]);
            Sample { duration: 3600, cts_offset: 0, keyframe: key, data: Bytes::from(data) }
        };
        file.extend_from_slice(&fragment(1, 1, 90_000, &[sample(true, 1), sample(false, 2)]).expect("frag"));
        let (stream, packets) = ffprobe(&file);
        assert_eq!(stream["codec_name"], "hevc");
        assert_eq!(stream["codec_tag_string"], "hvc1");
        assert_eq!((stream["width"].as_i64(), stream["height"].as_i64()), (Some(1280), Some(720)));
        assert_eq!(packets.len(), 2);
        assert_eq!(cfg.codec_string(), "hvc1.1.6.L93.90");
    }

    #[test]
    fn ffprobe_reads_av1_track() {
        let cfg = TrackConfig::Av1(onair_media::Av1Config::parse(onair_media::av1::SAMPLE_AV1C_360P).expect("av1c"));
        let mut file = init_segment(1, &cfg).expect("init").to_vec();
        // A padding OBU (type 15) with obu_size, standing in for a frame.
        let s = Sample { duration: 3600, cts_offset: 0, keyframe: true, data: Bytes::from_static(&[0x7a, 0x02, 0, 0]) };
        file.extend_from_slice(&fragment(1, 1, 0, &[s]).expect("frag"));
        let (stream, packets) = ffprobe(&file);
        assert_eq!((stream["codec_name"].as_str(), stream["codec_tag_string"].as_str()), (Some("av1"), Some("av01")));
        assert_eq!((stream["width"].as_i64(), stream["height"].as_i64()), (Some(640), Some(360)));
        assert_eq!(packets.len(), 1);
        assert_eq!(cfg.codec_string(), "av01.0.01M.08");
    }

    #[test]
    fn ffprobe_reads_vp9_track() {
        let record = [1, 0, 0, 0, 0, 21, 0x82, 1, 1, 1, 0, 0];
        let key = [0x82, 0x49, 0x83, 0x42, 0x00, 0x27, 0xf0, 0x16, 0x76, 0x06, 0x38, 0x24];
        let cfg = TrackConfig::Vp9(onair_media::Vp9Config::parse(&record, &key).expect("vpcC"));
        let mut file = init_segment(1, &cfg).expect("init").to_vec();
        let s = Sample { duration: 3600, cts_offset: 0, keyframe: true, data: Bytes::copy_from_slice(&key) };
        file.extend_from_slice(&fragment(1, 1, 0, &[s]).expect("frag"));
        let (stream, packets) = ffprobe(&file);
        assert_eq!((stream["codec_name"].as_str(), stream["codec_tag_string"].as_str()), (Some("vp9"), Some("vp09")));
        assert_eq!((stream["width"].as_i64(), stream["height"].as_i64()), (Some(640), Some(360)));
        assert_eq!(packets.len(), 1);
        assert_eq!(cfg.codec_string(), "vp09.00.21.08");
    }

    #[test]
    fn ffprobe_reads_audio_track() {
        let cfg = TrackConfig::Aac(AacConfig::parse(&[0x11, 0x90]).expect("asc"));
        let mut file = init_segment(2, &cfg).expect("init").to_vec();
        let s = Sample { duration: 1024, cts_offset: 0, keyframe: true, data: Bytes::from_static(&[0x21, 0x10, 0x04]) };
        file.extend_from_slice(&fragment(1, 2, 48_000, &[s.clone(), s.clone()]).expect("frag"));
        file.extend_from_slice(&fragment(2, 2, 50_048, &[s]).expect("frag"));
        let (stream, packets) = ffprobe(&file);
        assert_eq!(stream["codec_name"], "aac");
        assert_eq!(stream["sample_rate"], "48000");
        assert_eq!(stream["channels"], 2);
        let dts: Vec<i64> = packets.iter().map(|p| p["dts"].as_i64().expect("dts")).collect();
        assert_eq!(dts, vec![48_000, 49_024, 50_048]);
    }
}
