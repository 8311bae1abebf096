//! One MP4 from several single-track CMAF renditions (a clip's download: its best video and its
//! audio): an init segment whose `moov` holds every track (renumbered 1, 2, …) and the tracks'
//! fragments interleaved in decode-time order (ISO/IEC 14496-12 §8.8: a fragmented MP4 may carry
//! any track in any `moof`).
//!
//! Fragments are not re-encoded: each `moof` + `mdat` pair is copied with its `tfhd` track_ID,
//! `mfhd` sequence number and `tfdt` decode time patched in place, so every size and `trun` data
//! offset stays valid. Decode times are rebased so the file starts at 0 (a clip cut from the
//! middle of a broadcast would otherwise start, and report its duration, from the broadcast's
//! start), by the same wall-clock amount on every track, which keeps them in sync.

use bytes::{Bytes, BytesMut};
use mp4_atom::{Atom, Decode, DecodeAtom, Encode, Ftyp, Header, Moov};

/// Why renditions could not be interleaved.
#[derive(Debug, thiserror::Error)]
pub enum InterleaveError {
    /// An init segment is malformed, or lacks `ftyp`, `moov` or a track.
    #[error("bad init segment of track {track}: {why}")]
    Init {
        /// Index of the track in the input.
        track: usize,
        /// What is wrong.
        why: String,
    },
    /// A fragment is malformed: a box runs past the end, a `moof` without `mfhd`/`tfhd`/`tfdt`,
    /// or a `moof` not followed by its `mdat`.
    #[error("bad fragment of track {track}: {why}")]
    Fragment {
        /// Index of the track in the input.
        track: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// mp4-atom could not encode the combined `moov`.
    #[error("encoding the init segment: {0}")]
    Encode(#[from] mp4_atom::Error),
}

/// One track: its init segment (`ftyp` + `moov` with one `trak`) and its media, in decode order:
/// chunks of `moof` + `mdat` pairs (e.g. a clip's segments), each with the wall-clock time it
/// starts at (s, e.g. its PROGRAM-DATE-TIME), which orders the tracks' fragments even where the
/// media timestamps restart (a reconnected encoder).
#[derive(Debug, Clone)]
pub struct TrackMedia {
    /// `ftyp` + `moov`.
    pub init: Bytes,
    /// (start in wall-clock seconds, `moof` + `mdat` pairs).
    pub media: Vec<(f64, Bytes)>,
}

/// (offset, size, fourcc) of each box in `data[from..to]`.
fn boxes(data: &[u8], from: usize, to: usize) -> Option<Vec<(usize, usize, [u8; 4])>> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let h = data.get(at..at + 8)?;
        let size = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if size < 8 || at + size > to {
            return None;
        }
        out.push((at, size, [h[4], h[5], h[6], h[7]]));
        at += size;
    }
    Some(out)
}

/// A `moof` + `mdat` pair of one track, with where its ids are and when it starts.
struct Fragment {
    bytes: BytesMut,
    /// Offset of the `mfhd` sequence number.
    sequence_at: usize,
    /// Offsets of each `tfhd` track_ID.
    track_id_at: Vec<usize>,
    /// Offset and version of each `tfdt` base media decode time (version 1: 64 bits).
    tfdt_at: Vec<(usize, u8)>,
    /// The first `tfdt`, ticks.
    tfdt: u64,
    /// Its track's timescale.
    timescale: u32,
    /// Wall-clock start: its chunk's, plus its `tfdt` offset from the chunk's first fragment, s.
    start_s: f64,
}

fn fragments(track: usize, media: &[(f64, Bytes)], timescale: u32) -> Result<Vec<Fragment>, InterleaveError> {
    let bad = |why| InterleaveError::Fragment { track, why };
    let mut out = Vec::new();
    for (chunk_start, chunk) in media {
        let mut first_tfdt = None;
        let top = boxes(chunk, 0, chunk.len()).ok_or(bad("a box runs past the end"))?;
        let mut i = 0;
        while i < top.len() {
            let (at, size, kind) = top[i];
            if &kind != b"moof" {
                i += 1;
                continue;
            }
            let (mdat_at, mdat_size, mdat_kind) = *top.get(i + 1).ok_or(bad("a moof without its mdat"))?;
            if &mdat_kind != b"mdat" {
                return Err(bad("a moof not followed by its mdat"));
            }
            let mut sequence_at = None;
            let mut track_id_at = Vec::new();
            let mut tfdt_at = Vec::new();
            let mut start = None;
            for (c_at, c_size, c_kind) in boxes(chunk, at + 8, at + size).ok_or(bad("a box inside moof runs past it"))? {
                match &c_kind {
                    b"mfhd" => sequence_at = Some(c_at + 12 - at),
                    b"traf" => {
                        for (t_at, _, t_kind) in boxes(chunk, c_at + 8, c_at + c_size).ok_or(bad("a box inside traf runs past it"))? {
                            match &t_kind {
                                b"tfhd" => track_id_at.push(t_at + 12 - at),
                                b"tfdt" => {
                                    let version = chunk[t_at + 8];
                                    tfdt_at.push((t_at + 12 - at, version));
                                    let v = if version == 1 {
                                        chunk.get(t_at + 12..t_at + 20).map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
                                    } else {
                                        chunk.get(t_at + 12..t_at + 16).map(|b| u64::from(u32::from_be_bytes(b.try_into().unwrap_or([0; 4]))))
                                    };
                                    start = start.or(v);
                                }
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            let (Some(sequence_at), Some(start)) = (sequence_at, start) else { return Err(bad("a moof without mfhd or tfdt")) };
            if track_id_at.is_empty() {
                return Err(bad("a moof without tfhd"));
            }
            let end = mdat_at + mdat_size;
            let first = *first_tfdt.get_or_insert(start);
            let start_s = chunk_start + start.saturating_sub(first) as f64 / f64::from(timescale.max(1));
            out.push(Fragment { bytes: BytesMut::from(&chunk[at..end]), sequence_at, track_id_at, tfdt_at, tfdt: start, timescale, start_s });
            i += 2;
        }
    }
    Ok(out)
}

fn top_level<T: Atom>(track: usize, mut data: &[u8]) -> Result<T, InterleaveError> {
    let bad = |why: String| InterleaveError::Init { track, why };
    while !data.is_empty() {
        let header = Header::decode(&mut data).map_err(|e| bad(e.to_string()))?;
        let size = header.size.unwrap_or(data.len());
        if size > data.len() {
            return Err(bad("truncated".into()));
        }
        let (body, rest) = data.split_at(size);
        if header.kind == T::KIND {
            return T::decode_atom(&header, &mut &body[..]).map_err(|e| bad(e.to_string()));
        }
        data = rest;
    }
    Err(bad(format!("no {}", T::KIND)))
}

/// Interleaves `tracks` into one fragmented MP4: `(init segment, fragments in time order)`;
/// the first track's `ftyp` and `mvhd` are kept. Errors: [`InterleaveError`].
pub fn interleave(tracks: &[TrackMedia]) -> Result<(Bytes, Vec<Bytes>), InterleaveError> {
    let mut ftyp = None;
    let mut moov: Option<Moov> = None;
    let mut all = Vec::new();
    for (n, t) in tracks.iter().enumerate() {
        let id = n as u32 + 1;
        let mut m: Moov = top_level(n, &t.init)?;
        let mut trak = m.trak.drain(..).next().ok_or_else(|| InterleaveError::Init { track: n, why: "no trak".into() })?;
        let old = trak.tkhd.track_id;
        trak.tkhd.track_id = id;
        let timescale = trak.mdia.mdhd.timescale;
        let mut trex = m.mvex.as_ref().and_then(|x| x.trex.iter().find(|t| t.track_id == old).cloned()).unwrap_or_default();
        trex.track_id = id;
        trex.default_sample_description_index = trex.default_sample_description_index.max(1);
        match moov.as_mut() {
            None => {
                ftyp = Some(top_level::<Ftyp>(n, &t.init)?);
                m.trak = vec![trak];
                m.mvex = Some(mp4_atom::Mvex { mehd: None, trex: vec![trex] });
                moov = Some(m);
            }
            Some(first) => {
                first.trak.push(trak);
                if let Some(x) = first.mvex.as_mut() {
                    x.trex.push(trex);
                }
            }
        }
        for mut f in fragments(n, &t.media, timescale)? {
            for &at in &f.track_id_at {
                f.bytes[at..at + 4].copy_from_slice(&id.to_be_bytes());
            }
            all.push(f);
        }
    }
    let (Some(ftyp), Some(mut moov)) = (ftyp, moov) else { return Err(InterleaveError::Init { track: 0, why: "no tracks".into() }) };
    moov.mvhd.next_track_id = tracks.len() as u32 + 1;
    let mut init = Vec::new();
    ftyp.encode(&mut init)?;
    moov.encode(&mut init)?;
    all.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    // The earliest decode time over the tracks, in seconds: every track moves back by it.
    let origin_s = all.iter().map(|f| f.tfdt as f64 / f64::from(f.timescale.max(1))).fold(f64::INFINITY, f64::min);
    let out = all
        .into_iter()
        .enumerate()
        .map(|(i, mut f)| {
            let at = f.sequence_at;
            f.bytes[at..at + 4].copy_from_slice(&(i as u32 + 1).to_be_bytes());
            let shift = (origin_s * f64::from(f.timescale)).round() as u64;
            for &(at, version) in &f.tfdt_at {
                if version == 1 {
                    let t = u64::from_be_bytes(f.bytes[at..at + 8].try_into().unwrap_or([0; 8])).saturating_sub(shift);
                    f.bytes[at..at + 8].copy_from_slice(&t.to_be_bytes());
                } else {
                    let t = u64::from(u32::from_be_bytes(f.bytes[at..at + 4].try_into().unwrap_or([0; 4]))).saturating_sub(shift);
                    f.bytes[at..at + 4].copy_from_slice(&(t as u32).to_be_bytes());
                }
            }
            f.bytes.freeze()
        })
        .collect();
    Ok((Bytes::from(init), out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boxes::{fragment, init_segment, Sample};
    use onair_media::{AacConfig, AvcConfig, TrackConfig};

    #[test]
    fn two_tracks_in_decode_order_with_their_ids() {
        let video = init_segment(1, &TrackConfig::Avc(AvcConfig::parse(onair_media::avc::SAMPLE_AVCC_720P).expect("avcc"))).expect("video init");
        // AAC-LC 48 kHz stereo: its timescale is 48 000.
        let audio = init_segment(1, &TrackConfig::Aac(AacConfig::parse(&[0x11, 0x90]).expect("asc"))).expect("audio init");
        let sample = |d: u32, byte: u8| Sample { duration: d, cts_offset: 0, keyframe: true, data: Bytes::from(vec![byte; 10]) };
        // Video at 90 kHz: fragments at 0 and 1 s; audio at 48 kHz: at 0.5 and 1.5 s.
        let v: Vec<(f64, Bytes)> = [0u64, 90_000].iter().map(|&t| (t as f64 / 90_000.0, fragment(1, 1, t, &[sample(90_000, 1)]).expect("frag"))).collect();
        let a: Vec<(f64, Bytes)> = [24_000u64, 72_000].iter().map(|&t| (t as f64 / 48_000.0, fragment(1, 1, t, &[sample(48_000, 2)]).expect("frag"))).collect();
        let (init, frags) = interleave(&[TrackMedia { init: video.clone(), media: v }, TrackMedia { init: audio.clone(), media: a }]).expect("interleave");
        let moov: Moov = top_level(0, &init).expect("moov");
        assert_eq!(moov.trak.iter().map(|t| t.tkhd.track_id).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(moov.mvex.expect("mvex").trex.iter().map(|t| t.track_id).collect::<Vec<_>>(), vec![1, 2]);
        // Order: video 0 s, audio 0.5 s, video 1 s, audio 1.5 s; each patched to its track and numbered.
        let ids: Vec<(u32, u32)> = frags
            .iter()
            .map(|f| {
                let moof: mp4_atom::Moof = top_level(0, f).expect("moof");
                (moof.mfhd.sequence_number, moof.traf[0].tfhd.track_id)
            })
            .collect();
        assert_eq!(ids, vec![(1, 1), (2, 2), (3, 1), (4, 2)]);
        // Rebased to the earliest track's start (video at 0 s here): audio keeps its 0.5 s.
        let tfdt = |f: &Bytes| top_level::<mp4_atom::Moof>(0, f).expect("moof").traf[0].tfdt.as_ref().map(|t| t.base_media_decode_time);
        assert_eq!(frags.iter().map(tfdt).collect::<Vec<_>>(), vec![Some(0), Some(24_000), Some(90_000), Some(72_000)]);
        // A clip from the middle: video from 10 s, audio from 10.5 s, comes out from 0 and 0.5 s.
        let v: Vec<(f64, Bytes)> = vec![(10.0, fragment(1, 1, 900_000, &[sample(90_000, 1)]).expect("frag"))];
        let a: Vec<(f64, Bytes)> = vec![(10.5, fragment(1, 1, 504_000, &[sample(48_000, 2)]).expect("frag"))];
        let (_, frags) = interleave(&[TrackMedia { init: video.clone(), media: v }, TrackMedia { init: audio.clone(), media: a }]).expect("interleave");
        assert_eq!(frags.iter().map(tfdt).collect::<Vec<_>>(), vec![Some(0), Some(24_000)]);
        // The sample bytes are where the trun says (the mdat payload, untouched).
        assert_eq!(&frags[1][frags[1].len() - 10..], &[2; 10]);
    }
}
