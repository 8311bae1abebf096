//! Demuxes MPEG-TS written by the ffmpeg CLI (what an SRT publisher sends), pushed in SRT-sized
//! pieces of 1316 bytes.

use std::process::Command;

use onair_mpegts::{adts, StreamKind, TsDemuxer};

#[test]
fn demuxes_ffmpeg_h264_aac() {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "2"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac", "-ac", "2", "-f", "mpegts", "-"])
        .output()
        .expect("ffmpeg must be installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut d = TsDemuxer::new();
    let mut pes = Vec::new();
    for chunk in out.stdout.chunks(1316) {
        pes.extend(d.push(chunk));
    }
    pes.extend(d.flush());
    assert!(d.take_errors().is_empty());
    let video: Vec<_> = pes.iter().filter(|p| p.kind == StreamKind::H264).collect();
    let audio: Vec<_> = pes.iter().filter(|p| p.kind == StreamKind::AacAdts).collect();
    assert_eq!(video.len(), 50, "one PES per picture");
    let dts: Vec<u64> = video.iter().map(|p| p.dts.expect("dts")).collect();
    assert!(dts.windows(2).all(|w| w[1] - w[0] == 3600), "25 fps at 90 kHz: {:?}", &dts[..5]);
    let frames: usize = audio.iter().map(|p| adts::frames(&p.data).len()).sum();
    assert!((90..=96).contains(&frames), "2 s of 48 kHz AAC is ~94 frames, got {frames}");
    let first = adts::frames(&audio[0].data)[0];
    assert_eq!(first.audio_specific_config, [0x11, 0x90]);
}
