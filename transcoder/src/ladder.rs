//! Ladder policy: which renditions to encode for a given source.

use serde::{Deserialize, Serialize};

/// A configured rung: a target height, bit rate and frame-rate cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rung {
    /// Rendition name in URLs, e.g. `480p`.
    pub name: String,
    /// Output height in pixels; the width follows the source's display aspect ratio.
    pub height: u32,
    /// Average video bit rate, kbit/s (also the VBV max rate).
    pub bitrate_kbps: u32,
    /// Frame-rate cap, frames per second; sources above it are decimated.
    pub max_fps: u32,
}

impl Rung {
    /// The default ladder: 720p30 at 3 Mbit/s, 480p30 at 1.2 Mbit/s, 360p30 at 600 kbit/s.
    pub fn default_ladder() -> Vec<Rung> {
        let r = |name: &str, height, bitrate_kbps| Rung { name: name.into(), height, bitrate_kbps, max_fps: 30 };
        vec![r("720p", 720, 3000), r("480p", 480, 1200), r("360p", 360, 600)]
    }
}

/// A rung planned for one source: concrete output size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRung {
    /// Rendition name.
    pub name: String,
    /// Output width in pixels (even).
    pub width: u32,
    /// Output height in pixels (even).
    pub height: u32,
    /// Average bit rate, kbit/s.
    pub bitrate_kbps: u32,
    /// Frame-rate cap, frames per second.
    pub max_fps: u32,
}

/// Plans the ladder for a `source_width` × `source_height` source: rungs above the source's
/// height are skipped (never upscale), and so are rungs of its height unless `keep_source_height`
/// (the source rendition already covers that size, except when its codec is one players may not
/// decode, such as HEVC). Widths keep the source's aspect ratio rounded to even numbers (4:2:0
/// chroma), and rungs come out from the highest to the lowest.
pub fn plan_ladder(rungs: &[Rung], source_width: u32, source_height: u32, keep_source_height: bool) -> Vec<PlannedRung> {
    if source_width == 0 || source_height == 0 {
        return Vec::new();
    }
    let mut planned: Vec<PlannedRung> = rungs
        .iter()
        .filter(|r| r.height >= 2 && (r.height < source_height || (keep_source_height && r.height == source_height)))
        .map(|r| {
            let height = r.height & !1;
            // width = source_width × height / source_height, rounded to the nearest even number.
            let (sw, h, sh) = (u64::from(source_width), u64::from(height), u64::from(source_height));
            let width = ((sw * h + sh) / (2 * sh) * 2) as u32;
            PlannedRung { name: r.name.clone(), width: width.max(2), height, bitrate_kbps: r.bitrate_kbps, max_fps: r.max_fps.max(1) }
        })
        .collect();
    planned.sort_by_key(|r| std::cmp::Reverse(r.height));
    planned.dedup_by_key(|r| r.height);
    planned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &[PlannedRung]) -> Vec<(String, u32, u32)> {
        p.iter().map(|r| (r.name.clone(), r.width, r.height)).collect()
    }

    #[test]
    fn ladder_for_common_sources() {
        let l = Rung::default_ladder();
        assert_eq!(
            names(&plan_ladder(&l, 1920, 1080, false)),
            vec![("720p".into(), 1280, 720), ("480p".into(), 854, 480), ("360p".into(), 640, 360)]
        );
        // A 720p source: the 720p rung would not be smaller than the source, so it is skipped.
        assert_eq!(names(&plan_ladder(&l, 1280, 720, false)), vec![("480p".into(), 854, 480), ("360p".into(), 640, 360)]);
        // 4:5 PAL-ish camera footage (720x576): aspect kept, even sizes.
        assert_eq!(names(&plan_ladder(&l, 720, 576, false)), vec![("480p".into(), 600, 480), ("360p".into(), 450, 360)]);
        // Narrow sources (640x272): nothing to do.
        assert!(plan_ladder(&l, 640, 272, false).is_empty());
        assert!(plan_ladder(&l, 640, 360, false).is_empty());
        // Portrait 1080x1920 (phones): heights below the source, widths follow.
        assert_eq!(names(&plan_ladder(&l, 1080, 1920, false))[0], ("720p".into(), 406, 720));
        assert!(plan_ladder(&l, 0, 0, false).is_empty());
        // An HEVC 720p source keeps the 720p H.264 rung.
        assert_eq!(names(&plan_ladder(&l, 1280, 720, true))[0], ("720p".into(), 1280, 720));
    }

    #[test]
    fn ladder_is_sorted_and_deduplicated() {
        let mut l = Rung::default_ladder();
        l.reverse();
        l.push(Rung { name: "dup".into(), height: 480, bitrate_kbps: 1, max_fps: 30 });
        let p = plan_ladder(&l, 1920, 1080, false);
        assert_eq!(p.iter().map(|r| r.height).collect::<Vec<_>>(), vec![720, 480, 360]);
    }
}
