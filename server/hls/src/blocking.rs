//! Delivery Directives and blocking playlist reload (RFC 8216bis §6.2.5.2, §6.2.6).

/// A request's EXT-X-SKIP directive (`_HLS_skip`, §6.2.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SkipRequest {
    /// No delta update asked for.
    #[default]
    No,
    /// `_HLS_skip=YES` (or `v2`; we carry no date ranges, so both skip segments only).
    Yes,
}

/// The Delivery Directives of a playlist request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Directives {
    /// `_HLS_msn`: hold until this Media Sequence Number is in the playlist.
    pub msn: Option<u64>,
    /// `_HLS_part`: with `msn`, hold until this part of that segment is in the playlist.
    pub part: Option<u32>,
    /// `_HLS_skip`.
    pub skip: SkipRequest,
}

/// Malformed directives; answered with 400 Bad Request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DirectiveError {
    /// `_HLS_part` without `_HLS_msn` (§6.2.5.2).
    #[error("_HLS_part requires _HLS_msn")]
    PartWithoutMsn,
    /// A directive value is not a decimal integer or not YES/v2.
    #[error("invalid value for {0}")]
    Invalid(&'static str),
}

impl Directives {
    /// Reads the directives from query pairs (already percent-decoded). Unknown parameters are ignored.
    /// Errors: [`DirectiveError`].
    pub fn from_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, DirectiveError> {
        let mut d = Directives::default();
        for (k, v) in pairs {
            match k {
                "_HLS_msn" => d.msn = Some(v.parse().map_err(|_| DirectiveError::Invalid("_HLS_msn"))?),
                "_HLS_part" => d.part = Some(v.parse().map_err(|_| DirectiveError::Invalid("_HLS_part"))?),
                "_HLS_skip" => {
                    d.skip = match v {
                        "YES" | "v2" => SkipRequest::Yes,
                        _ => return Err(DirectiveError::Invalid("_HLS_skip")),
                    }
                }
                _ => {}
            }
        }
        if d.part.is_some() && d.msn.is_none() {
            return Err(DirectiveError::PartWithoutMsn);
        }
        Ok(d)
    }

    /// True when the request asks to block (`_HLS_msn` present).
    pub fn is_blocking(&self) -> bool {
        self.msn.is_some()
    }
}

/// The live edge of a Media Playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveEdge {
    /// Media Sequence Number of the last segment (complete or being built), if any.
    pub last_msn: Option<u64>,
    /// Index of the last part of that segment.
    pub last_part: u32,
    /// The playlist has EXT-X-ENDLIST.
    pub ended: bool,
}

impl LiveEdge {
    /// True when the playlist contains what the directives ask for: part `part` of segment `msn`
    /// (a part index past a segment's last part means part 0 of the next segment), or, without
    /// `_HLS_part`, the complete segment `msn`.
    pub fn satisfies(&self, d: &Directives) -> bool {
        let (Some(msn), Some(last)) = (d.msn, self.last_msn) else { return d.msn.is_none() };
        match d.part {
            Some(part) => last > msn || (last == msn && self.last_part >= part),
            None => last > msn,
        }
    }
}

/// What to do with a playlist request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Answer now with the current playlist.
    Ready,
    /// Hold the request until the live edge satisfies the directives (at most 3 × target duration, then 503).
    Wait,
    /// Refuse with 400: the request is too far in the future.
    BadRequest(&'static str),
}

/// Applies §6.2.5.2: the answer is immediate once the playlist has the requested part or segment or
/// has ended; a request more than two segments past the last one, or more parts ahead than the
/// Advance Part Limit, is a 400; anything else waits.
///
/// `part_target` is in seconds; the Advance Part Limit is 3 / PART-TARGET parts when PART-TARGET < 1 s, else 3.
pub fn decide(d: &Directives, edge: &LiveEdge, part_target: f64) -> Decision {
    if edge.ended || !d.is_blocking() || edge.satisfies(d) {
        return Decision::Ready;
    }
    let Some(msn) = d.msn else { return Decision::Ready };
    let last = edge.last_msn.unwrap_or(0);
    if edge.last_msn.is_some() && msn > last + 2 {
        return Decision::BadRequest("_HLS_msn is more than two segments past the last one in the playlist");
    }
    let limit = if part_target > 0.0 && part_target < 1.0 { (3.0 / part_target).ceil() as u32 } else { 3 };
    if let Some(part) = d.part {
        let ahead = if edge.last_msn == Some(msn) { part.saturating_sub(edge.last_part) } else { part };
        if ahead > limit {
            return Decision::BadRequest("_HLS_part is beyond the Advance Part Limit");
        }
    }
    Decision::Wait
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(msn: Option<u64>, part: Option<u32>) -> Directives {
        Directives { msn, part, skip: SkipRequest::No }
    }

    #[test]
    fn parses_directives() {
        assert_eq!(Directives::from_query([("_HLS_msn", "5"), ("_HLS_part", "2")]), Ok(d(Some(5), Some(2))));
        assert_eq!(Directives::from_query([("_HLS_part", "2")]), Err(DirectiveError::PartWithoutMsn));
        assert_eq!(Directives::from_query([("_HLS_msn", "x")]), Err(DirectiveError::Invalid("_HLS_msn")));
        assert_eq!(Directives::from_query([("_HLS_skip", "YES")]).map(|d| d.skip), Ok(SkipRequest::Yes));
        assert_eq!(Directives::from_query([("token", "abc")]), Ok(Directives::default()));
    }

    #[test]
    fn decisions() {
        let edge = LiveEdge { last_msn: Some(10), last_part: 3, ended: false };
        assert_eq!(decide(&d(None, None), &edge, 0.2), Decision::Ready);
        assert_eq!(decide(&d(Some(10), Some(3)), &edge, 0.2), Decision::Ready);
        assert_eq!(decide(&d(Some(10), Some(4)), &edge, 0.2), Decision::Wait);
        assert_eq!(decide(&d(Some(9), None), &edge, 0.2), Decision::Ready);
        assert_eq!(decide(&d(Some(10), None), &edge, 0.2), Decision::Wait);
        assert_eq!(decide(&d(Some(11), Some(0)), &edge, 0.2), Decision::Wait);
        assert_eq!(decide(&d(Some(12), None), &edge, 0.2), Decision::Wait);
        assert!(matches!(decide(&d(Some(13), None), &edge, 0.2), Decision::BadRequest(_)));
        assert!(matches!(decide(&d(Some(10), Some(19)), &edge, 0.2), Decision::BadRequest(_)));
        assert_eq!(decide(&d(Some(10), Some(18)), &edge, 0.2), Decision::Wait);
        let ended = LiveEdge { ended: true, ..edge };
        assert_eq!(decide(&d(Some(13), None), &ended, 0.2), Decision::Ready);
    }
}
