//! The RTMP handshake, server side (RTMP spec §5.2).
//!
//! We answer with the "simple" handshake: S1 carries zeros where a digest-style server puts its
//! version, which tells FFmpeg's and librtmp's clients (OBS) not to look for a digest; S2 echoes C1.

use bytes::{Buf, BytesMut};

use crate::RtmpError;

/// Size of C1, C2, S1 and S2 in bytes (§5.2.3).
pub const HANDSHAKE_SIZE: usize = 1536;

/// Progress of the server handshake.
#[derive(Debug, Default)]
pub struct Handshake {
    state: State,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    WaitC0C1,
    WaitC2,
    Done,
}

/// What one call to [`Handshake::advance`] produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HandshakeStep {
    /// Bytes to send to the peer (S0+S1+S2 once C0+C1 arrived).
    pub output: Vec<u8>,
    /// True once C2 was consumed: the rest of the input is chunk stream data.
    pub done: bool,
}

impl Handshake {
    /// Consumes handshake bytes from `input` (leaving any chunk-stream bytes after C2 in it).
    ///
    /// `epoch_ms` is the server's uptime in ms for S1's time field. Errors: [`RtmpError::BadVersion`].
    pub fn advance(&mut self, input: &mut BytesMut, epoch_ms: u32) -> Result<HandshakeStep, RtmpError> {
        let mut step = HandshakeStep::default();
        if self.state == State::WaitC0C1 {
            if input.is_empty() {
                return Ok(step);
            }
            if input[0] != 3 {
                return Err(RtmpError::BadVersion(input[0]));
            }
            if input.len() < 1 + HANDSHAKE_SIZE {
                return Ok(step);
            }
            input.advance(1);
            let c1 = input.split_to(HANDSHAKE_SIZE);
            step.output.reserve(1 + 2 * HANDSHAKE_SIZE);
            step.output.push(3);
            step.output.extend_from_slice(&epoch_ms.to_be_bytes());
            step.output.extend_from_slice(&[0; 4]);
            // S1's random part: any bytes do; reuse C1's so the response is deterministic for tests.
            step.output.extend_from_slice(&c1[8..]);
            step.output.extend_from_slice(&c1);
            self.state = State::WaitC2;
        }
        if self.state == State::WaitC2 && input.len() >= HANDSHAKE_SIZE {
            input.advance(HANDSHAKE_SIZE);
            self.state = State::Done;
        }
        step.done = self.state == State::Done;
        Ok(step)
    }

    /// True once the handshake is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_in_pieces() {
        let mut hs = Handshake::default();
        let mut input = BytesMut::new();
        input.extend_from_slice(&[3]);
        input.extend_from_slice(&[7; 100]);
        assert_eq!(hs.advance(&mut input, 0).expect("ok"), HandshakeStep::default());
        input.extend_from_slice(&[7; HANDSHAKE_SIZE - 100]);
        let step = hs.advance(&mut input, 5).expect("ok");
        assert_eq!(step.output.len(), 1 + 2 * HANDSHAKE_SIZE);
        assert_eq!(&step.output[1..5], &5u32.to_be_bytes());
        assert_eq!(&step.output[5..9], &[0; 4]);
        assert!(!step.done);
        input.extend_from_slice(&[1; HANDSHAKE_SIZE]);
        input.extend_from_slice(b"chunkdata");
        assert!(hs.advance(&mut input, 5).expect("ok").done);
        assert_eq!(&input[..], b"chunkdata");
    }

    #[test]
    fn rejects_other_versions() {
        let mut input = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        assert_eq!(Handshake::default().advance(&mut input, 0), Err(RtmpError::BadVersion(b'G')));
    }
}
