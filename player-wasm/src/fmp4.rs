//! The two numbers the player reads from CMAF (ISO/IEC 14496-12): the track timescale (`mdhd`, in
//! the init segment) and a fragment's base media decode time (`tfdt`, §8.8.12). Parsing is done by
//! the `mp4-atom` crate.

use mp4_atom::{Any, Decode};

/// Why a CMAF object could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Fmp4Error {
    /// No `moov` in an init segment.
    #[error("init segment has no moov/trak/mdia/mdhd")]
    NoTimescale,
    /// No `moof/traf/tfdt` in a fragment.
    #[error("fragment has no moof/traf/tfdt")]
    NoTfdt,
}

fn top_level(mut data: &[u8]) -> impl Iterator<Item = Any> + '_ {
    std::iter::from_fn(move || if data.is_empty() { None } else { Any::decode(&mut data).ok() })
}

/// The first track's timescale (ticks per second) from an init segment (`ftyp` + `moov`).
/// Errors: [`Fmp4Error::NoTimescale`].
pub fn timescale(init: &[u8]) -> Result<u32, Fmp4Error> {
    top_level(init)
        .find_map(|b| match b {
            Any::Moov(moov) => moov.trak.first().map(|t| t.mdia.mdhd.timescale),
            _ => None,
        })
        .ok_or(Fmp4Error::NoTimescale)
}

/// RFC 6381 codec strings of every track of an init segment, in track order, for Multivariant
/// Playlists that omit CODECS: `avc1.PPCCLL` / `avc3.PPCCLL` from `avcC` (ISO/IEC 14496-15 §5.3.3)
/// and `mp4a.40.AOT` from `esds` (RFC 6381 §3.3). Tracks of other codecs are left out.
/// Errors: [`Fmp4Error::NoTimescale`] when there is no `moov`.
pub fn codecs(init: &[u8]) -> Result<Vec<String>, Fmp4Error> {
    use mp4_atom::Codec;
    let moov = top_level(init).find_map(|b| if let Any::Moov(m) = b { Some(m) } else { None }).ok_or(Fmp4Error::NoTimescale)?;
    let avc = |c: &mp4_atom::Avcc| format!("{:02x}{:02x}{:02x}", c.avc_profile_indication, c.profile_compatibility, c.avc_level_indication);
    Ok(moov
        .trak
        .iter()
        .flat_map(|t| t.mdia.minf.stbl.stsd.codecs.iter())
        .filter_map(|c| match c {
            Codec::Avc1(a) => Some(format!("avc1.{}", avc(&a.avcc))),
            Codec::Avc3(a) => Some(format!("avc3.{}", avc(&a.avcc))),
            Codec::Mp4a(m) => {
                let aot = m.esds.es_desc.dec_config.dec_specific.as_ref().map_or(2, |d| d.profile);
                Some(format!("mp4a.40.{aot}"))
            }
            _ => None,
        })
        .collect())
}

/// The base media decode time of the first `traf` of the first `moof` in a fragment, part or
/// segment, in timescale ticks. Errors: [`Fmp4Error::NoTfdt`].
pub fn base_media_decode_time(fragment: &[u8]) -> Result<u64, Fmp4Error> {
    top_level(fragment)
        .find_map(|b| match b {
            Any::Moof(moof) => moof.traf.first().and_then(|t| t.tfdt.as_ref()).map(|t| t.base_media_decode_time),
            _ => None,
        })
        .ok_or(Fmp4Error::NoTfdt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use onair_cmaf::boxes::{fragment, init_segment, Sample};
    use onair_media::{avc::AvcConfig, TrackConfig};

    #[test]
    fn reads_what_the_packager_writes() {
        let cfg = TrackConfig::Avc(AvcConfig::parse(onair_media::avc::SAMPLE_AVCC_720P).expect("avcc"));
        let init = init_segment(1, &cfg).expect("init");
        assert_eq!(timescale(&init), Ok(90_000));
        let sample = Sample { duration: 3600, cts_offset: 0, keyframe: true, data: bytes::Bytes::from_static(&[0, 0, 0, 1, 0x65]) };
        let part = fragment(7, 1, 123_456_789, &[sample]).expect("fragment");
        assert_eq!(base_media_decode_time(&part), Ok(123_456_789));
        assert_eq!(base_media_decode_time(&init), Err(Fmp4Error::NoTfdt));
        assert_eq!(timescale(&part), Err(Fmp4Error::NoTimescale));
        assert_eq!(timescale(b"garbage"), Err(Fmp4Error::NoTimescale));
        assert_eq!(codecs(&init), Ok(vec!["avc1.64001f".to_string()]));
        let aac = TrackConfig::Aac(onair_media::AacConfig::parse(&[0x11, 0x90]).expect("asc"));
        assert_eq!(codecs(&init_segment(2, &aac).expect("init")), Ok(vec!["mp4a.40.2".to_string()]));
    }
}
