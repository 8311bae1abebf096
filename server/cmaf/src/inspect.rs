//! Reading back the facts a relay needs from CMAF bytes it did not write: a track's timescale from
//! its init segment, and a fragment's duration from its `moof` (ISO/IEC 14496-12 §8.8), so that
//! imported parts keep the exact durations (in ticks) their origin gave them.

use mp4_atom::{Atom, Decode, DecodeAtom, Header, Moof, Moov};

/// Why CMAF bytes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// A box is malformed or truncated.
    #[error("malformed box: {0}")]
    Decode(#[from] mp4_atom::Error),
    /// The bytes hold no `moov` (init segment) or no `moof` (fragment).
    #[error("no {0} box")]
    Missing(&'static str),
    /// A sample has no duration in its `trun`, its `tfhd` or the init segment's `trex`.
    #[error("a sample has no duration")]
    NoDuration,
}

/// Facts of the first track of an init segment (`ftyp` + `moov`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackFacts {
    /// `mdhd` timescale, ticks per second.
    pub timescale: u32,
    /// `trex` default sample duration, ticks (0 when absent).
    pub default_sample_duration: u32,
}

/// The top-level boxes of kind `T` in `data`, decoded; every other box is skipped by its header's
/// size (an `mdat` is never copied). Errors: a malformed header, a box running past the end of
/// `data` (a truncated fragment), or a malformed `T`.
fn top_level<T: Atom>(mut data: &[u8]) -> Result<Vec<T>, InspectError> {
    let mut found = Vec::new();
    while !data.is_empty() {
        let header = Header::decode(&mut data)?;
        let size = header.size.unwrap_or(data.len());
        if size > data.len() {
            return Err(InspectError::Decode(mp4_atom::Error::OutOfBounds));
        }
        let (body, rest) = data.split_at(size);
        if header.kind == T::KIND {
            found.push(T::decode_atom(&header, &mut &body[..])?);
        }
        data = rest;
    }
    Ok(found)
}

/// Reads an init segment's first track. Errors: [`InspectError::Decode`], [`InspectError::Missing`].
pub fn init_facts(init: &[u8]) -> Result<TrackFacts, InspectError> {
    let moov: Moov = top_level::<Moov>(init)?.into_iter().next().ok_or(InspectError::Missing("moov"))?;
    let trak = moov.trak.first().ok_or(InspectError::Missing("trak"))?;
    let default_sample_duration = moov
        .mvex
        .as_ref()
        .and_then(|m| m.trex.iter().find(|t| t.track_id == trak.tkhd.track_id))
        .map_or(0, |t| t.default_sample_duration);
    Ok(TrackFacts { timescale: trak.mdia.mdhd.timescale, default_sample_duration })
}

/// Total duration, in ticks of the track's timescale, of the samples in a fragment (one or more
/// `moof` + `mdat`), taking each sample's duration from its `trun` entry, else `tfhd`, else the
/// init segment's `trex` default (`facts`). Errors: [`InspectError`].
pub fn fragment_duration(fragment: &[u8], facts: &TrackFacts) -> Result<u64, InspectError> {
    let moofs = top_level::<Moof>(fragment)?;
    if moofs.is_empty() {
        return Err(InspectError::Missing("moof"));
    }
    moofs.iter().map(|m| moof_duration(m, facts)).sum()
}

/// True if a fragment's first sample is a sync sample (its `sample_is_non_sync_sample` flag clear,
/// ISO/IEC 14496-12 §8.8.3.1), from the `trun` first-sample or per-sample flags or the `tfhd`
/// default. Errors: [`InspectError`] when there is no `moof` or no sample.
pub fn starts_with_sync_sample(fragment: &[u8]) -> Result<bool, InspectError> {
    let moofs = top_level::<Moof>(fragment)?;
    let moof = moofs.first().ok_or(InspectError::Missing("moof"))?;
    let traf = moof.traf.first().ok_or(InspectError::Missing("traf"))?;
    let trun = traf.trun.first().ok_or(InspectError::Missing("trun"))?;
    let first = trun.samples.get(0).ok_or(InspectError::Missing("sample"))?;
    let flags = first.flags.or(traf.tfhd.default_sample_flags).unwrap_or(0);
    Ok(flags & 0x0001_0000 == 0)
}

fn moof_duration(moof: &Moof, facts: &TrackFacts) -> Result<u64, InspectError> {
    let mut total = 0u64;
    for traf in &moof.traf {
        let default = traf.tfhd.default_sample_duration.unwrap_or(facts.default_sample_duration);
        for trun in &traf.trun {
            for entry in trun.samples.iter() {
                let d = entry.duration.unwrap_or(default);
                if d == 0 && default == 0 {
                    return Err(InspectError::NoDuration);
                }
                total += u64::from(d);
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boxes::{fragment, init_segment, Sample};
    use bytes::Bytes;

    #[test]
    fn reads_back_what_the_packager_wrote() {
        let config = onair_media::TrackConfig::Avc(onair_media::AvcConfig::parse(onair_media::avc::SAMPLE_AVCC_720P).expect("avcc"));
        let init = init_segment(1, &config).expect("init");
        let facts = init_facts(&init).expect("facts");
        assert_eq!(facts.timescale, 90_000);
        let samples: Vec<Sample> = (0..5)
            .map(|i| Sample { duration: 3_600 + i, cts_offset: 0, keyframe: i == 0, data: Bytes::from_static(b"\0\0\0\x01x") })
            .collect();
        let frag = fragment(1, 7, 0, &samples).expect("fragment");
        assert_eq!(fragment_duration(&frag, &facts).expect("duration"), 5 * 3_600 + 10);
        assert!(starts_with_sync_sample(&frag).expect("flags"));
        let later = fragment(2, 7, 0, &samples[1..]).expect("fragment");
        assert!(!starts_with_sync_sample(&later).expect("flags"));
        assert!(matches!(fragment_duration(&init, &facts), Err(InspectError::Missing("moof"))));
        assert!(fragment_duration(&frag[..frag.len() / 3], &facts).is_err(), "a truncated fragment is an error");
        assert!(init_facts(&frag).is_err());
    }
}
