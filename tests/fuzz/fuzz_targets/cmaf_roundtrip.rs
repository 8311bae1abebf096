#![no_main]
//! CMAF writer round trip: arbitrary samples written as moof+mdat must decode back (with mp4-atom)
//! to the same sample count, sizes, durations and flags, and the mdat must hold the bytes in order.
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mp4_atom::{Decode, Moof, TrunSamples};
use onair_cmaf::{fragment, Sample};

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let base = u64::from_le_bytes(data[..8].try_into().unwrap_or_default());
    let mut samples = Vec::new();
    let mut rest = &data[8..];
    while rest.len() >= 4 && samples.len() < 64 {
        let len = usize::from(rest[0] % 32);
        let duration = u32::from(u16::from_le_bytes([rest[1], rest[2]]));
        let keyframe = rest[3] & 1 == 1;
        rest = &rest[4..];
        let take = len.min(rest.len());
        samples.push(Sample { duration, cts_offset: i32::from(rest.first().copied().unwrap_or(0)), keyframe, data: Bytes::copy_from_slice(&rest[..take]) });
        rest = &rest[take..];
    }
    if samples.is_empty() {
        return; // the packager never writes an empty fragment
    }
    let out = fragment(7, 1, base, &samples).expect("small fragments always encode");
    let mut buf = &out[..];
    let moof = Moof::decode(&mut buf).expect("our moof decodes");
    assert_eq!(moof.mfhd.sequence_number, 7);
    assert_eq!(moof.traf[0].tfdt.as_ref().map(|t| t.base_media_decode_time), Some(base));
    let TrunSamples::Explicit(entries) = &moof.traf[0].trun[0].samples else { panic!("explicit trun expected") };
    assert_eq!(entries.len(), samples.len());
    for (e, s) in entries.iter().zip(&samples) {
        assert_eq!(e.size, Some(s.data.len() as u32));
        assert_eq!(e.duration, Some(s.duration));
    }
    // mdat follows: 8-byte header then the samples back to back.
    let payload: Vec<u8> = samples.iter().flat_map(|s| s.data.iter().copied()).collect();
    assert_eq!(&buf[8..], &payload[..]);
    let offset = moof.traf[0].trun[0].data_offset.expect("data offset") as usize;
    assert_eq!(&out[offset..], &payload[..]);
});
