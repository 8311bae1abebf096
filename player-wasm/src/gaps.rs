//! Holes in the media element's buffered ranges the playhead has to be moved across.
//!
//! Browsers do not play across a hole in Media Source Extensions media: Chromium stops at the
//! last frame before it (`readyState` HAVE_CURRENT_DATA, `currentTime` frozen, often some tens of
//! ms before the end of the range, where its last video frame ends). Holes are expected: at a
//! discontinuity (a publisher that reconnected: its first audio and video samples do not start
//! at the same instant), after a fail-over to another server, or after a start-up seek the
//! element dropped.

/// How far after the playhead (s) a buffered range may start for the player to jump to it when
/// the playhead is in a hole.
pub const MAX_HOLE_S: f64 = 5.0;

/// How close to the end of its range (s) a playhead that no longer advances counts as stopped
/// at the hole after it rather than waiting for media still to come.
pub const STALL_BEFORE_END_S: f64 = 0.5;

/// How long a hole after a stalled playhead may be (s) for the player to jump it.
pub const MAX_STALL_HOLE_S: f64 = 1.0;

/// Where the playhead should go to leave a hole, seconds of media time, or `None` to stay.
///
/// - `ranges`: the element's buffered ranges, `(start, end)` in seconds, ascending;
/// - `ct`: `currentTime`, seconds;
/// - `stalled`: the element plays (not paused or seeking) but has no media after the current
///   frame (`readyState` below HAVE_FUTURE_DATA).
///
/// In a hole (no range holds `ct`, 50 ms of slack before a range's start): the start of the
/// next range when it is under [`MAX_HOLE_S`] ahead, or whatever range comes next when `ct` is
/// before all of them. Stalled within [`STALL_BEFORE_END_S`] of the end of its range: the start
/// of the next range when the hole is under [`MAX_STALL_HOLE_S`]. The target lands 20 ms into the
/// range, past the start the element may round down to.
pub fn jump_target(ranges: &[(f64, f64)], ct: f64, stalled: bool) -> Option<f64> {
    let containing = ranges.iter().find(|(s, e)| ct >= *s - 0.05 && ct <= *e);
    let next = match containing {
        None => {
            let before_all = ranges.first().is_some_and(|(s, _)| ct < *s);
            ranges.iter().find(|(s, _)| *s > ct && (*s - ct < MAX_HOLE_S || before_all))
        }
        Some(&(_, end)) if stalled && end - ct < STALL_BEFORE_END_S => {
            ranges.iter().find(|(s, _)| *s >= end && *s - end < MAX_STALL_HOLE_S)
        }
        Some(_) => None,
    };
    next.map(|(s, _)| s + 0.02)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_playhead_in_a_hole_goes_to_the_next_range() {
        let r = [(10.0, 15.0), (16.0, 20.0)];
        assert_eq!(jump_target(&r, 15.5, false), Some(16.02));
        // Far holes are not jumped, unless the playhead is before all media.
        assert_eq!(jump_target(&[(10.0, 15.0), (30.0, 40.0)], 15.5, false), None);
        assert_eq!(jump_target(&[(30.0, 40.0)], 0.0, false), Some(30.02));
        // Just before a range counts as in it.
        assert_eq!(jump_target(&r, 15.97, false), None);
    }

    #[test]
    fn a_playhead_stalled_before_a_small_hole_jumps_it() {
        // Chromium at a reconnect: frozen 50 ms before a 30 ms hole.
        let r = [(10.0, 15.770332), (15.799999, 42.6)];
        assert_eq!(jump_target(&r, 15.720996, true), Some(15.819999));
        // Still playing: the element gets there by itself first.
        assert_eq!(jump_target(&r, 15.720996, false), None);
        // Stalled well before the end: waiting on decoding, not on a hole.
        assert_eq!(jump_target(&r, 12.0, true), None);
        // Stalled at the live edge (nothing after): wait for media.
        assert_eq!(jump_target(&[(10.0, 15.77)], 15.72, true), None);
        // A long hole is not a stall to jump.
        assert_eq!(jump_target(&[(10.0, 15.77), (20.0, 30.0)], 15.72, true), None);
    }
}
