#![no_main]
//! Arbitrary bytes after a valid handshake into the RTMP server session: must never panic.
use libfuzzer_sys::fuzz_target;
use onair_rtmp::{Limits, ServerSession};

fuzz_target!(|data: &[u8]| {
    let mut s = ServerSession::new(Limits { max_message_size: 1 << 16, ..Limits::default() });
    let mut hs = vec![3u8];
    hs.extend_from_slice(&[0u8; 3072]);
    let _ = s.feed(&hs);
    for chunk in data.chunks(97) {
        if s.feed(chunk).is_err() {
            break;
        }
        while s.poll_event().is_some() {}
        let _ = s.take_output();
    }
});
