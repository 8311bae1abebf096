#![no_main]
//! The MPEG-TS demuxer and ADTS framing on arbitrary bytes, pushed in arbitrary pieces: must never
//! panic, and every PES it returns respects the size cap.
use libfuzzer_sys::fuzz_target;
use onair_mpegts::{adts, TsDemuxer, MAX_PES_SIZE};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let mut d = TsDemuxer::new();
    let step = usize::from(split).max(1);
    let mut out = Vec::new();
    for piece in rest.chunks(step) {
        out.extend(d.push(piece));
    }
    out.extend(d.flush());
    for pes in &out {
        assert!(pes.data.len() <= MAX_PES_SIZE);
        let _ = adts::frames(&pes.data);
    }
    let _ = d.take_errors();
    let _ = adts::frames(rest);
});
