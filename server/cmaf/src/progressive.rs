//! One progressive MP4 from several single-track CMAF renditions (a clip's download: its best
//! video and its audio): `ftyp`, then a `moov` with complete sample tables (ISO/IEC 14496-12
//! §8.6–§8.7: `stts`, `ctts`, `stss`, `stsc`, `stsz`, `stco`) and no `mvex`, then one `mdat`. The
//! `moov` comes first ("fast start"), so a player starts while the file downloads and any editor
//! opens it as an ordinary MP4.
//!
//! Nothing is re-encoded: each `trun` of each fragment becomes a chunk whose sample bytes are
//! copied unchanged into the `mdat`. Chunks of the tracks are interleaved by wall-clock time (each
//! media chunk's start, plus its `tfdt` offset from the chunk's first fragment), which keeps audio
//! and video close in the file even where the media timestamps restart (a reconnected encoder).
//! Every track starts at 0: a video whose first sample has a composition offset (B-frames) gets an
//! edit list (`elst`) that starts its presentation at that sample, and with `start_at_s` every
//! track's edit list starts it at that exact time (a clip cut at the key frame before it).

use bytes::Bytes;
use mp4_atom::{
    Atom, Co64, Ctts, CttsEntry, Decode, DecodeAtom, Edts, Elst, ElstEntry, Encode, FourCC, Ftyp, Header, Moof, Moov, Stco, Stsc, StscEntry, Stss, Stsz,
    StszSamples, Stts, SttsEntry,
};

/// Why renditions could not be combined.
#[derive(Debug, thiserror::Error)]
pub enum ProgressiveError {
    /// An init segment is malformed, or lacks `moov` or a track.
    #[error("bad init segment of track {track}: {why}")]
    Init {
        /// Index of the track in the input.
        track: usize,
        /// What is wrong.
        why: String,
    },
    /// A fragment is malformed: a box runs past the end, a `trun` points outside its fragment, a
    /// sample has no size or duration.
    #[error("bad fragment of track {track}: {why}")]
    Fragment {
        /// Index of the track in the input.
        track: usize,
        /// What is wrong.
        why: String,
    },
    /// The file would exceed what 64-bit chunk offsets or 32-bit sample tables hold, or
    /// mp4-atom could not encode the `moov`.
    #[error("encoding the moov: {0}")]
    Encode(#[from] mp4_atom::Error),
}

/// One track: its init segment (`ftyp` + `moov` with one `trak`) and its media, in decode order:
/// chunks of `moof` + `mdat` pairs (e.g. a clip's segments), each with the wall-clock time it
/// starts at (s, e.g. its PROGRAM-DATE-TIME).
#[derive(Debug, Clone)]
pub struct TrackMedia {
    /// `ftyp` + `moov`.
    pub init: Bytes,
    /// (start in wall-clock seconds, `moof` + `mdat` pairs).
    pub media: Vec<(f64, Bytes)>,
}

/// A sample as the sample tables describe it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SampleFacts {
    size: u32,
    duration: u32,
    sync: bool,
    cts: i64,
}

/// The samples of one `trun`: a chunk of the output.
struct Chunk {
    track: usize,
    start_s: f64,
    samples: Vec<SampleFacts>,
    /// Their bytes, back to back (a slice of the fragment: no copy).
    data: Bytes,
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

fn top_level<T: Atom>(track: usize, mut data: &[u8]) -> Result<T, ProgressiveError> {
    let bad = |why: String| ProgressiveError::Init { track, why };
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

/// Every `trun` of `media` as a chunk. `defaults`: the track's `trex` (duration, size, flags).
fn chunks(track: usize, media: &[(f64, Bytes)], timescale: u32, defaults: (u32, u32, u32)) -> Result<Vec<Chunk>, ProgressiveError> {
    let bad = |why: &str| ProgressiveError::Fragment { track, why: why.into() };
    let mut out = Vec::new();
    for (chunk_start, bytes) in media {
        let mut first_tfdt = None;
        for (at, size, kind) in boxes(bytes, 0, bytes.len()).ok_or(bad("a box runs past the end"))? {
            if &kind != b"moof" {
                continue;
            }
            let mut body = &bytes[at..at + size];
            let header = Header::decode(&mut body).map_err(|e| bad(&e.to_string()))?;
            let moof = Moof::decode_atom(&header, &mut body).map_err(|e| bad(&e.to_string()))?;
            for traf in &moof.traf {
                let tfdt = traf.tfdt.as_ref().map_or(0, |t| t.base_media_decode_time);
                let first = *first_tfdt.get_or_insert(tfdt);
                let start_s = chunk_start + tfdt.saturating_sub(first) as f64 / f64::from(timescale.max(1));
                let duration = traf.tfhd.default_sample_duration.unwrap_or(defaults.0);
                let size_default = traf.tfhd.default_sample_size.unwrap_or(defaults.1);
                let flags_default = traf.tfhd.default_sample_flags.unwrap_or(defaults.2);
                let base = match traf.tfhd.base_data_offset {
                    Some(b) => usize::try_from(b).map_err(|_| bad("base data offset"))?,
                    None => at,
                };
                // A trun without a data offset continues where the previous one's data ended.
                let mut cursor = base;
                for trun in &traf.trun {
                    let from = match trun.data_offset {
                        Some(o) => base.checked_add_signed(o as isize).ok_or(bad("a trun data offset before its fragment"))?,
                        None => cursor,
                    };
                    let mut samples = Vec::with_capacity(trun.samples.len());
                    for (i, e) in trun.samples.iter().enumerate() {
                        let flags = e.flags.unwrap_or(flags_default);
                        let s = SampleFacts {
                            size: e.size.unwrap_or(size_default),
                            duration: e.duration.unwrap_or(duration),
                            sync: flags & 0x0001_0000 == 0,
                            cts: e.cts.unwrap_or(0),
                        };
                        if s.size == 0 || (s.duration == 0 && i + 1 < trun.samples.len()) {
                            return Err(bad("a sample without a size or a duration"));
                        }
                        samples.push(s);
                    }
                    let len: usize = samples.iter().map(|s| s.size as usize).sum();
                    let data = bytes.get(from..from + len).ok_or(bad("a trun's samples run past its fragment"))?;
                    cursor = from + len;
                    out.push(Chunk { track, start_s, samples, data: bytes.slice_ref(data) });
                }
            }
        }
    }
    Ok(out)
}

/// Run-length `(count, value)` pairs of `values`.
fn runs<T: PartialEq + Copy>(values: impl Iterator<Item = T>) -> Vec<(u32, T)> {
    let mut out: Vec<(u32, T)> = Vec::new();
    for v in values {
        match out.last_mut() {
            Some((n, last)) if *last == v => *n += 1,
            _ => out.push((1, v)),
        }
    }
    out
}

/// Builds `tracks` into one progressive MP4: `(ftyp + moov + the mdat header, the mdat payload
/// in pieces)`, to be sent back to back. The first track's `mvhd` (its timescale) is kept; tracks
/// are numbered 1, 2, … in input order. `start_at_s` (wall-clock s, as the media's start times):
/// every track's presentation starts there, by an edit list over the samples before it (a clip
/// that must begin at a key frame shows from the exact time asked). Errors: [`ProgressiveError`].
pub fn progressive(tracks: &[TrackMedia], start_at_s: Option<f64>) -> Result<(Bytes, Vec<Bytes>), ProgressiveError> {
    let mut moov: Option<Moov> = None;
    let mut all = Vec::new();
    let mut traks = Vec::new();
    for (n, t) in tracks.iter().enumerate() {
        let mut m: Moov = top_level(n, &t.init)?;
        let trak = m.trak.drain(..).next().ok_or_else(|| ProgressiveError::Init { track: n, why: "no trak".into() })?;
        let trex = m.mvex.as_ref().and_then(|x| x.trex.iter().find(|x| x.track_id == trak.tkhd.track_id).cloned()).unwrap_or_default();
        let timescale = trak.mdia.mdhd.timescale;
        all.extend(chunks(n, &t.media, timescale, (trex.default_sample_duration, trex.default_sample_size, trex.default_sample_flags))?);
        traks.push(trak);
        moov.get_or_insert(m);
    }
    let Some(mut moov) = moov else { return Err(ProgressiveError::Init { track: 0, why: "no tracks".into() }) };
    all.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    // Where each chunk's bytes start in the mdat payload.
    let mut offsets = Vec::with_capacity(all.len());
    let mut payload = 0u64;
    for c in &all {
        offsets.push(payload);
        payload += c.data.len() as u64;
    }
    let movie_timescale = u64::from(moov.mvhd.timescale.max(1));
    let mut movie_duration = 0;
    for (n, trak) in traks.iter_mut().enumerate() {
        let mine: Vec<(usize, &Chunk)> = all.iter().enumerate().filter(|(_, c)| c.track == n).collect();
        let samples: Vec<SampleFacts> = mine.iter().flat_map(|(_, c)| c.samples.iter().copied()).collect();
        let ticks: u64 = samples.iter().map(|s| u64::from(s.duration)).sum();
        let timescale = u64::from(trak.mdia.mdhd.timescale.max(1));
        let stbl = &mut trak.mdia.minf.stbl;
        stbl.stts = Stts { entries: runs(samples.iter().map(|s| s.duration)).into_iter().map(|(sample_count, sample_delta)| SttsEntry { sample_count, sample_delta }).collect() };
        stbl.ctts = samples.iter().any(|s| s.cts != 0).then(|| Ctts {
            entries: runs(samples.iter().map(|s| s.cts)).into_iter().map(|(sample_count, sample_offset)| CttsEntry { sample_count, sample_offset }).collect(),
        });
        stbl.stss = samples.iter().any(|s| !s.sync).then(|| Stss { entries: samples.iter().enumerate().filter(|(_, s)| s.sync).map(|(i, _)| i as u32 + 1).collect() });
        stbl.stsz = Stsz { samples: StszSamples::Different { sizes: samples.iter().map(|s| s.size).collect() } };
        let per_chunk = runs(mine.iter().map(|(_, c)| c.samples.len() as u32));
        let mut first_chunk = 1;
        stbl.stsc = Stsc {
            entries: per_chunk
                .into_iter()
                .map(|(count, samples_per_chunk)| {
                    let e = StscEntry { first_chunk, samples_per_chunk, sample_description_index: 1 };
                    first_chunk += count;
                    e
                })
                .collect(),
        };
        // Relative for now: the moov's size decides where the mdat payload starts.
        stbl.co64 = Some(Co64 { entries: mine.iter().map(|(i, _)| offsets[*i]).collect() });
        stbl.stco = None;
        // Media skipped at the start: up to `start_at_s`, less than the whole track.
        let first_s = mine.first().map_or(0.0, |(_, c)| c.start_s);
        let skip = start_at_s.map_or(0, |at| ((at - first_s).max(0.0) * timescale as f64).round() as u64).min(ticks.saturating_sub(1));
        trak.tkhd.track_id = n as u32 + 1;
        trak.mdia.mdhd.duration = ticks;
        trak.tkhd.duration = (ticks - skip) * movie_timescale / timescale;
        movie_duration = movie_duration.max(trak.tkhd.duration);
        let media_time = samples.first().map_or(0, |s| s.cts.max(0) as u64) + skip;
        trak.edts = (media_time > 0).then(|| Edts {
            elst: Some(Elst { entries: vec![ElstEntry { segment_duration: trak.tkhd.duration, media_time: Some(media_time), media_rate: 1i16.into() }] }),
        });
    }
    moov.trak = traks;
    moov.mvex = None;
    moov.mvhd.duration = movie_duration;
    moov.mvhd.next_track_id = tracks.len() as u32 + 1;
    let ftyp = Ftyp { major_brand: FourCC::new(b"isom"), minor_version: 512, compatible_brands: [b"isom", b"iso2", b"avc1", b"mp41"].map(FourCC::new).to_vec() };
    let mut head = Vec::new();
    ftyp.encode(&mut head)?;
    let ftyp_len = head.len() as u64;
    let mut sized = Vec::new();
    moov.encode(&mut sized)?;
    // 32-bit offsets when the file allows (every player reads stco; co64 is the 4 GiB escape).
    let large = payload + ftyp_len + sized.len() as u64 + 16 > u64::from(u32::MAX);
    let mdat_header = if large { 16 } else { 8 };
    let narrow = |moov: &mut Moov| {
        for t in &mut moov.trak {
            let stbl = &mut t.mdia.minf.stbl;
            if let Some(c) = stbl.co64.take() {
                stbl.stco = Some(Stco { entries: c.entries.iter().map(|&o| o as u32).collect() });
            }
        }
    };
    if !large {
        narrow(&mut moov);
        sized.clear();
        moov.encode(&mut sized)?;
    }
    let base = ftyp_len + sized.len() as u64 + mdat_header;
    for t in &mut moov.trak {
        let stbl = &mut t.mdia.minf.stbl;
        if let Some(c) = stbl.co64.as_mut() {
            c.entries.iter_mut().for_each(|o| *o += base);
        }
        if let Some(c) = stbl.stco.as_mut() {
            for o in c.entries.iter_mut() {
                *o = u32::try_from(u64::from(*o) + base).map_err(|_| mp4_atom::Error::InvalidSize)?;
            }
        }
    }
    moov.encode(&mut head)?;
    debug_assert_eq!(head.len() as u64, base - mdat_header);
    if large {
        head.extend_from_slice(&1u32.to_be_bytes());
        head.extend_from_slice(b"mdat");
        head.extend_from_slice(&(payload + 16).to_be_bytes());
    } else {
        head.extend_from_slice(&((payload + 8) as u32).to_be_bytes());
        head.extend_from_slice(b"mdat");
    }
    Ok((Bytes::from(head), all.into_iter().map(|c| c.data).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boxes::{fragment, init_segment, Sample};
    use onair_media::{AacConfig, AvcConfig, TrackConfig};

    #[test]
    fn sample_tables_and_bytes_of_two_tracks() {
        let video = init_segment(1, &TrackConfig::Avc(AvcConfig::parse(onair_media::avc::SAMPLE_AVCC_720P).expect("avcc"))).expect("video init");
        // AAC-LC 48 kHz stereo: its timescale is 48 000.
        let audio = init_segment(1, &TrackConfig::Aac(AacConfig::parse(&[0x11, 0x90]).expect("asc"))).expect("audio init");
        let sample = |d: u32, cts: i32, key: bool, byte: u8| Sample { duration: d, cts_offset: cts, keyframe: key, data: Bytes::from(vec![byte; 10]) };
        // Video at 90 kHz from 10 s (a clip from the middle), 1 s fragments of two frames, the
        // first frame 3600 ticks late in presentation (B-frames); audio at 48 kHz from 10.5 s.
        let v: Vec<(f64, Bytes)> = [900_000u64, 990_000]
            .iter()
            .enumerate()
            .map(|(i, &t)| (10.0 + i as f64, fragment(i as u32 + 1, 1, t, &[sample(45_000, 3_600, true, 1), sample(45_000, 0, false, 3)]).expect("frag")))
            .collect();
        let a: Vec<(f64, Bytes)> = vec![(10.5, fragment(1, 1, 504_000, &[sample(48_000, 0, true, 2)]).expect("frag"))];
        let tracks = [TrackMedia { init: video, media: v }, TrackMedia { init: audio, media: a }];
        let (head, body) = progressive(&tracks, None).expect("progressive");
        let file: Vec<u8> = std::iter::once(&head).chain(body.iter()).flat_map(|b| b.iter().copied()).collect();
        let moov: Moov = top_level(0, &file).expect("moov");
        assert!(moov.mvex.is_none(), "not fragmented");
        let v = &moov.trak[0];
        let stbl = &v.mdia.minf.stbl;
        assert_eq!((v.tkhd.track_id, moov.trak[1].tkhd.track_id), (1, 2));
        assert_eq!(v.mdia.mdhd.duration, 180_000);
        assert_eq!(stbl.stts.entries, vec![SttsEntry { sample_count: 4, sample_delta: 45_000 }]);
        assert_eq!(stbl.stss.as_ref().map(|s| s.entries.clone()), Some(vec![1, 3]));
        assert_eq!(stbl.ctts.as_ref().map(|c| c.entries.len()), Some(4));
        assert_eq!(stbl.stsc.entries, vec![StscEntry { first_chunk: 1, samples_per_chunk: 2, sample_description_index: 1 }]);
        assert_eq!(v.edts.as_ref().and_then(|e| e.elst.as_ref()).map(|l| l.entries[0].media_time), Some(Some(3_600)), "presentation starts at the first frame");
        assert!(moov.trak[1].edts.is_none() && moov.trak[1].mdia.minf.stbl.stss.is_none(), "audio: every sample a sync sample");
        // Chunks in time order: video 10 s, audio 10.5 s, video 11 s; offsets point at their bytes.
        let offsets = |t: usize| moov.trak[t].mdia.minf.stbl.stco.as_ref().expect("stco").entries.clone();
        let (vo, ao) = (offsets(0), offsets(1));
        assert_eq!(&file[vo[0] as usize..vo[0] as usize + 20], [[1u8; 10], [3; 10]].concat().as_slice());
        assert_eq!(&file[ao[0] as usize..ao[0] as usize + 10], &[2; 10]);
        assert_eq!(ao[0], vo[0] + 20);
        assert_eq!(vo[1], ao[0] + 10);
        assert_eq!(file.len(), vo[1] as usize + 20, "the mdat ends the file");
        assert_eq!(&file[head.len() - 4..head.len()], b"mdat");

        // Shown from 10.75 s: video skips 0.75 s (67 500 ticks after its lead), audio 0.25 s.
        let (head, _) = progressive(&tracks, Some(10.75)).expect("trimmed");
        let moov: Moov = top_level(0, &head).expect("moov");
        let media_time = |t: usize| moov.trak[t].edts.as_ref().and_then(|e| e.elst.as_ref()).and_then(|l| l.entries[0].media_time);
        assert_eq!((media_time(0), media_time(1)), (Some(3_600 + 67_500), Some(12_000)));
        assert_eq!(moov.trak[0].mdia.mdhd.duration, 180_000, "every sample is still there");
        assert_eq!(moov.mvhd.duration, moov.trak[0].tkhd.duration);
        assert_eq!(moov.trak[0].tkhd.duration, (180_000 - 67_500) * u64::from(moov.mvhd.timescale) / 90_000);
    }
}
