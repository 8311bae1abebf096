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

/// A rung is kept only if its bit rate is at most this share of the source's: a smaller picture
/// that costs nearly as much as the source is no better choice for a player.
pub const MAX_SHARE_OF_SOURCE: f64 = 0.75;

/// Lowest bit rate a rung is capped to, kbit/s.
pub const MIN_RUNG_KBPS: u32 = 64;

/// Fits planned `rungs` to a `source_width` × `source_height` source measured at `source_kbps`:
/// each rung's bit rate is capped at the source's scaled by the rungs' pixel ratio (a smaller
/// picture of the same content needs no more bits per pixel), and a rung whose bit rate is still
/// above [`MAX_SHARE_OF_SOURCE`] of the source's is dropped, except one of the source's own height
/// (kept for players that cannot decode the source's codec).
pub fn fit_to_source(rungs: Vec<PlannedRung>, source_width: u32, source_height: u32, source_kbps: u32) -> Vec<PlannedRung> {
    let source_pixels = f64::from(source_width) * f64::from(source_height);
    if source_pixels == 0.0 || source_kbps == 0 {
        return rungs;
    }
    rungs
        .into_iter()
        .filter_map(|mut r| {
            let ratio = f64::from(r.width) * f64::from(r.height) / source_pixels;
            let cap = (f64::from(source_kbps) * ratio).round() as u32;
            r.bitrate_kbps = r.bitrate_kbps.min(cap.max(MIN_RUNG_KBPS));
            let compatibility = r.height >= source_height;
            (compatibility || f64::from(r.bitrate_kbps) <= MAX_SHARE_OF_SOURCE * f64::from(source_kbps)).then_some(r)
        })
        .collect()
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
    fn rungs_never_cost_more_than_the_source_per_pixel() {
        let l = Rung::default_ladder();
        // The camera sample: 720x576 at ~0.9 Mbit/s. 480p (600x480) was offered at 1.2 Mbit/s.
        let fitted = fit_to_source(plan_ladder(&l, 720, 576, false), 720, 576, 900);
        let rates: Vec<(u32, u32)> = fitted.iter().map(|r| (r.height, r.bitrate_kbps)).collect();
        assert_eq!(rates, vec![(480, 625), (360, 352)]);
        // A 1080p source at 8 Mbit/s keeps the configured rates.
        let big = fit_to_source(plan_ladder(&l, 1920, 1080, false), 1920, 1080, 8000);
        assert_eq!(big.iter().map(|r| r.bitrate_kbps).collect::<Vec<_>>(), vec![3000, 1200, 600]);
        // A rung barely smaller than the source is dropped: 720p from a 760p source.
        let near = fit_to_source(plan_ladder(&l, 1352, 760, false), 1352, 760, 2000);
        assert_eq!(near.iter().map(|r| r.height).collect::<Vec<_>>(), vec![480, 360]);
        // The H.264 rung at an HEVC source's own height stays, capped at the source's rate.
        let hevc = fit_to_source(plan_ladder(&l, 1280, 720, true), 1280, 720, 2000);
        assert_eq!((hevc[0].height, hevc[0].bitrate_kbps), (720, 2000));
        // A starved source: rungs get the floor, and are dropped when even that is too much.
        assert!(fit_to_source(plan_ladder(&l, 1280, 720, false), 1280, 720, 60).is_empty());
        // Unknown rate: unchanged.
        assert_eq!(fit_to_source(plan_ladder(&l, 1280, 720, false), 1280, 720, 0).len(), 2);
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
