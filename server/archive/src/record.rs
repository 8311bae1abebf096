//! The archive's file format, sans-IO: a chunk file is a fragmented MP4 that any player or
//! `ffprobe` reads as it is — the init segment (`ftyp`+`moov`) at offset 0, then each CMAF
//! segment (`moof`+`mdat` pairs, the bytes that were served live) preceded by a `free` box
//! (ISO/IEC 14496-12 §8.1.2: free space, which readers skip) that describes it.
//!
//! The description makes a file self-describing: after a crash the recorder [`scan`]s it, keeps
//! every record whose bytes are all present and whose CRC-32 matches, truncates the rest (a torn
//! tail), and rebuilds the index rows the database lacks.

use bytes::Bytes;

/// What a `free` box before a segment says about it (JSON in the box's payload).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SegmentMeta {
    /// Always `"onair-segment"`: tells our boxes from other free space.
    pub kind: String,
    /// Media Sequence Number.
    pub msn: u64,
    /// EXT-X-PROGRAM-DATE-TIME of its first sample, ms since the Unix epoch.
    pub pdt_ms: i64,
    /// Duration in µs.
    pub duration_us: i64,
    /// EXT-X-DISCONTINUITY before it (the encoder reconnected or changed configuration).
    pub discontinuity: bool,
    /// Segments before it are missing from the archive (the disk fell behind, or memory lost them).
    pub gap_before: bool,
    /// Length of the segment bytes after the box.
    pub len: u64,
    /// CRC-32 (IEEE) of those bytes.
    pub crc32: u32,
    /// Its Partial Segments: (bytes, duration µs) each, in order (a clip ends on a part boundary).
    pub parts: Vec<(u64, i64)>,
}

const KIND: &str = "onair-segment";

impl SegmentMeta {
    /// The description of `parts` (a segment's parts in order, with their durations in µs).
    pub fn new(msn: u64, pdt_ms: i64, discontinuity: bool, gap_before: bool, parts: &[(Bytes, i64)]) -> Self {
        let mut crc = crc32fast::Hasher::new();
        for (p, _) in parts {
            crc.update(p);
        }
        let len = parts.iter().map(|(p, _)| p.len() as u64).sum();
        let duration_us = parts.iter().map(|(_, d)| d).sum();
        let parts = parts.iter().map(|(p, d)| (p.len() as u64, *d)).collect();
        SegmentMeta { kind: KIND.into(), msn, pdt_ms, duration_us, discontinuity, gap_before, len, crc32: crc.finalize(), parts }
    }

    /// The `free` box (8-byte header + JSON) to write before the segment's bytes.
    pub fn to_box(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(8 + json.len());
        out.extend_from_slice(&((8 + json.len()) as u32).to_be_bytes());
        out.extend_from_slice(b"free");
        out.extend_from_slice(&json);
        out
    }
}

/// A segment found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its description.
    pub meta: SegmentMeta,
    /// Offset of its first byte (after the `free` box), bytes from the file start.
    pub offset: u64,
}

/// What [`scan`] found in a chunk file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scan {
    /// Length of the leading init segment (`ftyp`+`moov`), 0 if the file has none.
    pub init_len: u64,
    /// Every complete, intact segment, in file order.
    pub segments: Vec<Found>,
    /// Bytes from the start that are whole (init + complete records): the file is truncated to it.
    pub valid_len: u64,
}

fn box_at(data: &[u8], at: usize) -> Option<(usize, [u8; 4])> {
    let head = data.get(at..at + 8)?;
    let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let kind = [head[4], head[5], head[6], head[7]];
    // Size 0 ("to the end") and 1 (64-bit) never occur in what OnAir writes: treat them as torn.
    (size >= 8 && at + size <= data.len()).then_some((size, kind))
}

/// Walks a chunk file's bytes: the init segment, then `free`-described segments, stopping at the
/// first record that is incomplete or fails its CRC (everything after it is a torn tail).
pub fn scan(data: &[u8]) -> Scan {
    let mut at = 0;
    let mut moov = false;
    while let Some((size, kind)) = box_at(data, at) {
        if &kind != b"ftyp" && &kind != b"moov" {
            break;
        }
        moov |= &kind == b"moov";
        at += size;
    }
    if !moov {
        // No whole init segment: nothing in the file is usable.
        return Scan::default();
    }
    let init_len = at as u64;
    let mut segments = Vec::new();
    while let Some((size, kind)) = box_at(data, at) {
        if &kind != b"free" {
            break;
        }
        let Ok(meta) = serde_json::from_slice::<SegmentMeta>(&data[at + 8..at + size]) else { break };
        let start = at + size;
        let Some(end) = usize::try_from(meta.len).ok().and_then(|l| start.checked_add(l)).filter(|&e| e <= data.len()) else { break };
        if meta.kind != KIND || crc32fast::hash(&data[start..end]) != meta.crc32 {
            break;
        }
        segments.push(Found { meta, offset: start as u64 });
        at = end;
    }
    Scan { init_len, segments, valid_len: at as u64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((8 + body.len()) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    fn file(segments: usize) -> (Vec<u8>, Vec<SegmentMeta>) {
        let mut data = mp4_box(b"ftyp", b"iso6");
        data.extend(mp4_box(b"moov", &[0; 20]));
        let mut metas = Vec::new();
        for i in 0..segments {
            let parts = [(Bytes::from(mp4_box(b"moof", &[i as u8; 10])), 1_000_000), (Bytes::from(mp4_box(b"mdat", &[7; 100])), 1_000_000)];
            let meta = SegmentMeta::new(i as u64 + 5, 1_000 * i as i64, i == 1, false, &parts);
            data.extend(meta.to_box());
            for (p, _) in &parts {
                data.extend_from_slice(p);
            }
            metas.push(meta);
        }
        (data, metas)
    }

    #[test]
    fn finds_every_complete_segment() {
        let (data, metas) = file(3);
        let scan = scan(&data);
        assert_eq!(scan.init_len, 40);
        assert_eq!(scan.valid_len, data.len() as u64);
        assert_eq!(scan.segments.iter().map(|f| f.meta.clone()).collect::<Vec<_>>(), metas);
        let first = &scan.segments[0];
        assert_eq!(&data[first.offset as usize + 4..first.offset as usize + 8], b"moof");
    }

    /// A kill or power cut mid-write leaves a prefix, or a tail of zeros (ext4 extends the size
    /// before the data lands): both end the scan at the last whole record, at every cut point.
    #[test]
    fn a_torn_tail_is_cut_at_the_last_whole_segment() {
        let (data, _) = file(3);
        let whole = scan(&data);
        let ends: Vec<u64> = whole.segments.iter().map(|f| f.offset + f.meta.len).collect();
        for cut in 0..data.len() {
            let s = scan(&data[..cut]);
            let expect = ends.iter().copied().filter(|&e| e as usize <= cut).max().unwrap_or(if cut >= 40 { 40 } else { 0 });
            assert_eq!(s.valid_len, expect, "cut at {cut}");
            // (Zeros inside the init segment look like a whole one; the writer forces the init
            // segment to the disk before any segment goes after it.)
            if cut >= 40 {
                let mut zeros = data[..cut].to_vec();
                zeros.resize(data.len(), 0);
                assert_eq!(scan(&zeros).valid_len, expect, "zeros after {cut}");
            }
        }
        // A flipped byte inside the last segment fails its CRC.
        let mut bad = data.clone();
        let n = bad.len();
        bad[n - 3] ^= 0xff;
        assert_eq!(scan(&bad).valid_len, ends[1]);
    }
}
