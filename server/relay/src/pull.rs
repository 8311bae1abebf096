//! Pulling one rendition: follows the upstream's Media Playlist with blocking reloads and the
//! Preload Hint (the sans-IO [`onair_hls::follow`] decides what to fetch), and imports every part
//! into the local store with the upstream's own numbering ([`Placement::At`]), as soon as the
//! upstream has it; after a move to an upstream on another timeline, shifted to continue this
//! node's numbering after one discontinuity ([`Shift`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use onair_cmaf::inspect::{fragment_duration, init_facts, starts_with_sync_sample, InspectError, TrackFacts};
use onair_hls::follow::{directive_query, MergeError, Next, Position, TrackPlaylist};
use onair_hls::{Directives, MediaPlaylist, ParseError};
use onair_origin::Unavailable;
use onair_store::{NewPart, Placement, RenditionInfo, RenditionWriter, WriteError};

use crate::channel::{ChannelPull, Master, RenditionPull};
use crate::fetch::{FetchError, Fetched};

/// Parts fetched at once while importing the first segments of a rendition.
const INITIAL_FETCHES: usize = 8;

/// Why a step of a pull failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PullError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("unreadable Media Playlist: {0}")]
    Playlist(#[from] ParseError),
    #[error(transparent)]
    Merge(#[from] MergeError),
    #[error("unreadable media: {0}")]
    Media(#[from] InspectError),
    #[error("unsupported URI {0:?} (a relay pulls from OnAir nodes: init{{N}}.mp4, part{{N}}.m4s)")]
    Uri(String),
    #[error("store refused the import: {0}")]
    Write(#[from] WriteError),
    #[error("the upstream's window moved past this relay's position")]
    Behind,
    #[error("the upstream's Media Playlist went backwards")]
    Backwards,
    #[error("the upstream answered a blocking reload without the part asked for")]
    Unblocked,
}

impl PullError {
    fn kind(&self) -> &'static str {
        match self {
            PullError::Fetch(e) => e.kind(),
            PullError::Playlist(_) => "bad_playlist",
            PullError::Merge(_) => "bad_delta",
            PullError::Media(_) => "bad_media",
            PullError::Uri(_) => "bad_uri",
            PullError::Write(_) => "numbering",
            PullError::Behind => "behind",
            PullError::Backwards => "backwards",
            PullError::Unblocked => "unblocked",
        }
    }
}

fn number_in(uri: &str, prefix: &str, suffix: &str) -> Option<u64> {
    uri.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()
}

/// The init id an OnAir init URI names: `init.mp4` is 0, `init{N}.mp4` is N.
fn init_id(uri: &str) -> Result<u64, PullError> {
    if uri == "init.mp4" {
        return Ok(0);
    }
    number_in(uri, "init", ".mp4").filter(|n| *n > 0).ok_or_else(|| PullError::Uri(uri.into()))
}

fn part_id(uri: &str) -> Result<u64, PullError> {
    number_in(uri, "part", ".m4s").ok_or_else(|| PullError::Uri(uri.into()))
}

/// A rendition's facts from the Multivariant Playlist (the timescale comes from its init segment).
/// `None` when the playlist does not name it.
pub(crate) fn rendition_info(master: &MultivariantPlaylist, name: &str) -> Option<RenditionInfo> {
    let uri = format!("{name}/index.m3u8");
    let is_audio_codec = |c: &str| c.starts_with("mp4a") || c.starts_with("opus") || c.starts_with("ac-3") || c.starts_with("ec-3");
    if let Some(v) = master.variants.iter().find(|v| v.uri == uri) {
        let video = v.codecs.iter().find(|c| !is_audio_codec(c));
        return Some(RenditionInfo {
            name: name.into(),
            is_video: video.is_some(),
            codec: video.or(v.codecs.first()).cloned().unwrap_or_default(),
            resolution: v.resolution,
            frame_rate: v.frame_rate,
            channels: None,
            nominal_bitrate: Some(v.bandwidth),
            timescale: 0,
        });
    }
    let audio = master.audio.iter().find(|a| a.uri == uri)?;
    let codec = master.variants.iter().flat_map(|v| v.codecs.iter()).find(|c| is_audio_codec(c)).cloned().unwrap_or_default();
    Some(RenditionInfo {
        name: name.into(),
        is_video: false,
        codec,
        resolution: None,
        frame_rate: None,
        channels: audio.channels,
        nominal_bitrate: None,
        timescale: 0,
    })
}

use onair_hls::MultivariantPlaylist;

/// This node's numbering minus the upstream's, for one rendition: all zero while the channel
/// comes from the timeline it started on; set by [`Importer::rebase`] when the channel moved to an
/// upstream on another timeline (a publisher that moved to another origin, numbering from its own
/// start), so that this node's numbering continues after one EXT-X-DISCONTINUITY and players keep
/// their `_HLS_msn`/`_HLS_part` without a reload.
#[derive(Debug, Clone, Copy, Default)]
struct Shift {
    /// The channel's shift generation this rendition follows.
    generation: u64,
    msn: i64,
    part: i64,
    init: i64,
    discontinuity_sequence: i64,
    /// This node's first Media Sequence Number on the new timeline: its segment starts with
    /// EXT-X-DISCONTINUITY.
    first_msn: Option<u64>,
}

fn shifted(n: u64, by: i64) -> Result<u64, PullError> {
    u64::try_from(i128::from(n) + i128::from(by)).map_err(|_| PullError::Backwards)
}

/// True when `track` continues this node's copy `local` of the rendition under `shift`: the
/// newest segment both list (with parts upstream) has the same first part id and the same
/// PROGRAM-DATE-TIME (to 5 ms). Two fresh broadcasts of one encoder number alike; only the clock
/// tells them apart.
fn continues(track: &TrackPlaylist, local: &onair_store::Snapshot, shift: &Shift) -> bool {
    local
        .segments
        .iter()
        .rev()
        .find_map(|s| {
            let up = u64::try_from(i128::from(s.msn) - i128::from(shift.msn)).ok()?;
            let first = part_id(&track.segment(up)?.parts.first()?.uri).ok()?;
            let up_ms = track.start_ms(Position { msn: up, part: 0 })?;
            let local_ms = s.program_date_time.duration_since(UNIX_EPOCH).ok()?.as_secs_f64() * 1000.0;
            Some(i128::from(first) + i128::from(shift.part) == i128::from(s.first_part_id) && (up_ms - local_ms).abs() < 5.0)
        })
        .unwrap_or(false)
}

/// The import side of a pull: the rendition's writer and its current init segment.
struct Importer {
    channel: Arc<ChannelPull>,
    info: RenditionInfo,
    writer: Option<RenditionWriter>,
    /// The upstream's id of the current init segment, and its facts.
    init: Option<(u64, TrackFacts)>,
    shift: Shift,
}

impl Importer {
    /// Makes `init_uri` the current init segment, fetching it if it is new; claims the writer on
    /// the first one.
    async fn ensure_init(&mut self, init_uri: &str) -> Result<(), PullError> {
        let id = init_id(init_uri)?;
        if self.init.is_some_and(|(i, _)| i == id) {
            return Ok(());
        }
        let timeout = self.channel.shared.probe_timeout();
        let f = self.channel.get(format!("{}/{init_uri}", self.info.name), timeout, "init").await?;
        let facts = init_facts(&f.body)?;
        let info = RenditionInfo { timescale: facts.timescale, ..self.info.clone() };
        let local = shifted(id, self.shift.init)?;
        match &self.writer {
            Some(w) => w.import_init(local, info, f.body)?,
            None => {
                let Some(session) = self.channel.session_ref() else { return Err(PullError::Write(WriteError::NotOwner)) };
                self.writer = Some(session.import_writer(info, local, f.body)?);
            }
        }
        self.init = Some((id, facts));
        Ok(())
    }

    /// Imports part `pos` (fetched as `fetched`) as `track` lists it.
    async fn import(&mut self, track: &TrackPlaylist, pos: Position, fetched: Fetched) -> Result<(), PullError> {
        let facts = PartFacts::listed(track, pos)?;
        self.import_as(facts, fetched).await
    }

    async fn import_as(&mut self, facts: PartFacts, fetched: Fetched) -> Result<(), PullError> {
        self.ensure_init(&facts.init_uri).await?;
        let (Some((_, init)), Some(w)) = (&self.init, &self.writer) else { return Err(PullError::Write(WriteError::NotOwner)) };
        let duration = fragment_duration(&fetched.body, init)?;
        let now = SystemTime::now();
        let produced_at = fetched.produced_at.unwrap_or(now);
        let msn = shifted(facts.msn, self.shift.msn)?;
        let placement = Placement::At {
            msn,
            part_id: shifted(facts.part_id, self.shift.part)?,
            discontinuity: facts.discontinuity || self.shift.first_msn == Some(msn),
            discontinuity_sequence: shifted(facts.discontinuity_sequence, self.shift.discontinuity_sequence)?,
        };
        let part = NewPart {
            program_date_time: UNIX_EPOCH + Duration::from_micros((facts.start_ms.max(0.0) * 1000.0) as u64),
            duration,
            independent: facts.independent,
            data: fetched.body,
            produced_at,
        };
        w.append(placement, part)?;
        metrics::histogram!("onair_relay_part_delay_seconds").record(now.duration_since(produced_at).unwrap_or_default().as_secs_f64());
        Ok(())
    }
}

impl Importer {
    /// The channel moved to an upstream on another timeline: from `start` (upstream numbering)
    /// on, this rendition continues this node's numbering after one discontinuity, with a new init
    /// segment. The Media Sequence Number shift is the channel's, so renditions stay aligned: a
    /// rendition adopts the one another rendition set for this move, or sets a new one past every
    /// rendition's last segment.
    fn rebase(&mut self, track: &TrackPlaylist, start: Position) -> Result<(), PullError> {
        let Some(w) = &self.writer else { return Ok(()) };
        let pos = w.rendition().position();
        let seg = track.segment(start.msn).ok_or(PullError::Behind)?;
        let first = part_id(&seg.parts.first().ok_or(PullError::Behind)?.uri)?;
        let init = init_id(&seg.init_uri)?;
        let last = pos.last_msn.map_or(-1, |m| m as i64);
        let (generation, msn) = {
            let mut channel = self.channel.msn_shift.lock().unwrap_or_else(|e| e.into_inner());
            if channel.0 > self.shift.generation && start.msn as i64 + channel.1 > last {
                *channel
            } else {
                let newest = self.channel.shared.store.get(&self.channel.name).map_or(last, |b| {
                    b.renditions().iter().filter_map(|r| r.position().last_msn).map(|m| m as i64).max().unwrap_or(last)
                });
                *channel = (channel.0 + 1, newest.max(last) + 1 - start.msn as i64);
                *channel
            }
        };
        self.shift = Shift {
            generation,
            msn,
            part: pos.next_part_id as i64 - first as i64,
            init: pos.init_id as i64 + 1 - init as i64,
            discontinuity_sequence: pos.discontinuity_sequence as i64 + 1 - track.discontinuity_sequence(start.msn) as i64,
            first_msn: Some(shifted(start.msn, msn)?),
        };
        // The new timeline's init segment becomes a new one here, even with the same name upstream.
        self.init = None;
        metrics::counter!("onair_relay_timeline_changes_total").increment(1);
        tracing::warn!(
            channel = self.channel.name,
            rendition = self.info.name,
            upstream = self.channel.upstream(),
            msn_shift = msn,
            "the upstream is on another timeline (a new origin?): continuing after a discontinuity"
        );
        Ok(())
    }
}

/// What became of a hinted part fetched beside its blocking reload.
enum Hinted {
    /// Imported as soon as it landed (its place was certain).
    Imported,
    /// Fetched (or not); imported once the playlist lists it.
    Fetched(Result<Fetched, PullError>),
}

/// Where a part goes and what the playlist says of it.
struct PartFacts {
    msn: u64,
    part_id: u64,
    independent: bool,
    discontinuity: bool,
    discontinuity_sequence: u64,
    init_uri: String,
    start_ms: f64,
}

impl PartFacts {
    /// A part `track` lists at `pos`.
    fn listed(track: &TrackPlaylist, pos: Position) -> Result<Self, PullError> {
        let seg = track.segment(pos.msn).ok_or(PullError::Behind)?;
        let listed = seg.parts.get(pos.part as usize).ok_or(PullError::Behind)?;
        Ok(PartFacts {
            msn: pos.msn,
            part_id: part_id(&listed.uri)?,
            independent: listed.independent,
            discontinuity: seg.discontinuity,
            discontinuity_sequence: track.discontinuity_sequence(pos.msn),
            init_uri: seg.init_uri.clone(),
            start_ms: track.start_ms(pos).unwrap_or(0.0),
        })
    }

    /// The hinted part `uri`, fetched before the playlist that lists it: its place is certain when
    /// it continues the open segment `pos.msn` (not its first part) and does not start with a sync
    /// sample (a segment starts with one, so this part cannot open the next segment). `None` when
    /// the playlist must be waited for.
    fn hinted(track: &TrackPlaylist, pos: Position, uri: &str, fetched: &Fetched) -> Option<Self> {
        let seg = track.segment(pos.msn).filter(|s| s.uri.is_none() && pos.part > 0 && s.parts.len() == pos.part as usize)?;
        if starts_with_sync_sample(&fetched.body).unwrap_or(true) {
            return None;
        }
        Some(PartFacts {
            msn: pos.msn,
            part_id: part_id(uri).ok()?,
            independent: false,
            discontinuity: seg.discontinuity,
            discontinuity_sequence: track.discontinuity_sequence(pos.msn),
            init_uri: seg.init_uri.clone(),
            start_ms: track.live_edge_ms().unwrap_or(0.0),
        })
    }
}

/// Where a new pull starts: the first segment, among the last `back + 1`, that lists its parts.
fn start_position(track: &TrackPlaylist, back: usize) -> Position {
    let p = &track.playlist;
    let n = p.segments.len();
    let from = n.saturating_sub(back + 1);
    let first = (from..n).find(|&i| !p.segments[i].parts.is_empty()).unwrap_or(n);
    Position { msn: p.media_sequence + first as u64, part: 0 }
}

/// The rendition's task: pulls until released or the upstream ends the broadcast.
pub(crate) async fn run(channel: Arc<ChannelPull>, name: String, pull: Arc<RenditionPull>) {
    let Master::Ready(master) = channel.master.borrow().clone() else { return };
    let Some(info) = rendition_info(&master, &name) else {
        pull.ready.send_replace(Some(Err(Unavailable::NotFound)));
        return;
    };
    // A rendition first pulled after the channel moved numbers as the channel's others do.
    let (generation, msn) = *channel.msn_shift.lock().unwrap_or_else(|e| e.into_inner());
    let shift = Shift { generation, msn, ..Shift::default() };
    let mut importer = Importer { channel: channel.clone(), info, writer: None, init: None, shift };
    let stop = pull.stop.clone();
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = follow(&channel, &name, &pull, &mut importer) => {}
    }
    if let Some(w) = importer.writer.take() {
        if pull.stop.is_cancelled() && !channel.ended() {
            w.remove();
        }
    }
    pull.ready.send_if_modified(|r| {
        let unset = r.is_none();
        if unset {
            *r = Some(Err(Unavailable::UpstreamDown));
        }
        unset
    });
}

/// What the follow loop holds between steps.
struct Follow {
    track: Option<TrackPlaylist>,
    want: Position,
    /// Ask for delta updates (off after one could not be merged).
    skip: bool,
    /// The upstream `track` came from: after a failover the next step starts again from a full
    /// playlist of the new one (which may be on another timeline).
    upstream: String,
}

async fn follow(channel: &Arc<ChannelPull>, name: &str, pull: &RenditionPull, importer: &mut Importer) {
    let mut state = Follow { track: None, want: Position { msn: 0, part: 0 }, skip: true, upstream: channel.upstream() };
    let mut failures = 0u32;
    loop {
        match step(channel, name, pull, importer, &mut state).await {
            Ok(true) => {
                channel.end();
                return;
            }
            Ok(false) => failures = 0,
            Err(e) => {
                crate::count_error(e.kind());
                failures += 1;
                tracing::warn!(channel = channel.name, rendition = name, error = %e, "relay pull step failed");
                if pull.ready.borrow().is_none() {
                    // Not serving yet: tell the waiting viewers now (the next request starts a new
                    // pull) rather than retrying bad input; a failing upstream gets a few tries,
                    // the first of which may already have moved to the next upstream.
                    let transient = matches!(e, PullError::Fetch(FetchError::Transport(_) | FetchError::Timeout(_) | FetchError::Status(500..)));
                    if !transient || failures >= 3 {
                        let why = match e {
                            PullError::Fetch(FetchError::Status(404)) => Unavailable::NotFound,
                            PullError::Fetch(_) => Unavailable::UpstreamDown,
                            _ => Unavailable::BadUpstream,
                        };
                        pull.ready.send_replace(Some(Err(why)));
                        return;
                    }
                }
                match e {
                    // Out of step with the upstream (including a 400 for directives it finds out
                    // of range): start again from a full playlist.
                    PullError::Behind
                    | PullError::Backwards
                    | PullError::Write(WriteError::Numbering { .. })
                    | PullError::Fetch(FetchError::Status(400)) => state.track = None,
                    PullError::Merge(_) => state.skip = false,
                    _ => {}
                }
                if matches!(e, PullError::Write(WriteError::NotOwner | WriteError::Ended)) {
                    return;
                }
                // Back off a little on repeated failures; a failover already moved the channel.
                tokio::time::sleep(Duration::from_millis(u64::from(failures.min(10)) * 50)).await;
            }
        }
    }
}

/// One step; `Ok(true)` when the upstream ended the broadcast and everything was imported.
async fn step(channel: &Arc<ChannelPull>, name: &str, pull: &RenditionPull, importer: &mut Importer, state: &mut Follow) -> Result<bool, PullError> {
    let shared = &channel.shared;
    let upstream = channel.upstream();
    if upstream != state.upstream {
        state.track = None;
        state.upstream = upstream;
    }
    let Some(track) = &state.track else {
        // (Re)start: a full playlist, then the last segments' parts, fetched concurrently.
        let track = playlist(channel, name, None, false, shared.probe_timeout(), None).await?;
        let mut want = start_position(&track, shared.config.initial_segments);
        if let Some(w) = &importer.writer {
            // Continuing after an error or a failover: from where the store is, if the upstream
            // continues it; else the upstream is on another timeline (or moved past this node).
            let pos = w.rendition().position();
            if let Some(m) = pos.last_msn {
                if continues(&track, &w.rendition().snapshot(), &importer.shift) {
                    want = track.after(Position { msn: shifted(m, -importer.shift.msn)?, part: pos.last_part }, false);
                } else {
                    importer.rebase(&track, want)?;
                }
            }
        }
        let mut batch = Vec::new();
        while let Next::Part { pos, uri } = track.next(want, false) {
            batch.push((pos, uri));
            want = track.after(pos, false);
        }
        let paths: Vec<String> = batch.iter().map(|(_, uri)| format!("{name}/{uri}")).collect();
        let timeout = shared.probe_timeout();
        let fetched: Vec<Result<Fetched, PullError>> = futures::stream::iter(paths)
            .map(|path| channel.get(path, timeout, "part"))
            .buffered(INITIAL_FETCHES)
            .collect()
            .await;
        importer.ensure_init(track.segment(batch.first().map_or(want.msn, |b| b.0.msn)).map_or(&track.playlist.map_uri, |s| &s.init_uri)).await?;
        for ((pos, _), f) in batch.into_iter().zip(fetched) {
            importer.import(&track, pos, f?).await?;
        }
        if let Some(w) = &importer.writer {
            pull.ready.send_replace(Some(Ok(w.rendition().clone())));
        }
        state.want = want;
        state.track = Some(track);
        return Ok(false);
    };
    let block = shared.block_timeout(track.playlist.part_target);
    match track.next(state.want, false) {
        Next::Part { pos, uri } => {
            let f = channel.get(format!("{name}/{uri}"), shared.probe_timeout(), "part").await?;
            importer.import(track, pos, f).await?;
            state.want = track.after(pos, false);
        }
        Next::Hint { pos, uri, reload } => {
            // The hinted part and the playlist that will list it, in parallel (§6.2.5.2). A part
            // whose place is certain is imported the moment it lands, before the playlist.
            let (listed, hinted) = {
                let part = channel.get(format!("{name}/{uri}"), block, "part");
                let reload = playlist(channel, name, Some(reload), state.skip, block, Some(track));
                tokio::pin!(part, reload);
                tokio::select! {
                    biased;
                    p = &mut part => {
                        let hinted = match p {
                            Ok(f) => match PartFacts::hinted(track, pos, &uri, &f) {
                                Some(facts) => {
                                    importer.import_as(facts, f).await?;
                                    Hinted::Imported
                                }
                                None => Hinted::Fetched(Ok(f)),
                            },
                            Err(e) => Hinted::Fetched(Err(e)),
                        };
                        (reload.await?, hinted)
                    }
                    l = &mut reload => {
                        let l = l?;
                        (l, Hinted::Fetched(part.await))
                    }
                }
            };
            if !reached(&listed, pos) {
                return Err(PullError::Unblocked);
            }
            let same = listed.segment(pos.msn).and_then(|s| s.parts.get(pos.part as usize)).is_some_and(|p| p.uri == uri);
            match hinted {
                // The upstream placed it elsewhere than it must have: start again.
                Hinted::Imported if !same => return Err(PullError::Backwards),
                Hinted::Imported => state.want = listed.after(pos, false),
                Hinted::Fetched(Ok(f)) if same => {
                    importer.import(&listed, pos, f).await?;
                    state.want = listed.after(pos, false);
                }
                // Not produced as hinted (the upstream's encoder restarted): follow the playlist.
                Hinted::Fetched(Ok(_) | Err(PullError::Fetch(FetchError::Status(404)))) => {}
                Hinted::Fetched(Err(e)) => return Err(e),
            }
            state.track = Some(listed);
        }
        Next::Reload(d) => {
            let reloaded = playlist(channel, name, Some(d), state.skip, block, Some(track)).await?;
            let asked = Position { msn: d.msn.unwrap_or(0), part: d.part.unwrap_or(0) };
            if d.msn.is_some() && reloaded.can_block() && !reached(&reloaded, asked) && !reloaded.playlist.endlist {
                return Err(PullError::Unblocked);
            }
            state.track = Some(reloaded);
        }
        Next::Segment { .. } | Next::Behind => return Err(PullError::Behind),
        Next::Ended => return Ok(true),
    }
    Ok(false)
}

/// True if `track` lists `pos` or anything after it: what a blocking reload for `pos` waits for
/// (RFC 8216bis §6.2.5.2). An upstream that answers without it would have the relay spin.
fn reached(track: &TrackPlaylist, pos: Position) -> bool {
    match track.segment(pos.msn) {
        Some(seg) => seg.parts.len() > pos.part as usize || seg.uri.is_some() || track.last_msn() > Some(pos.msn),
        None => track.last_msn().is_some_and(|m| m > pos.msn) || track.playlist.endlist,
    }
}

/// Fetches the rendition's Media Playlist (blocking on `directives` when given, as a delta update
/// when `skip`), merged into `previous`. Errors: [`PullError`]; [`PullError::Backwards`] when it
/// lists less than `previous` did.
async fn playlist(
    channel: &ChannelPull,
    name: &str,
    directives: Option<Directives>,
    skip: bool,
    timeout: Duration,
    previous: Option<&TrackPlaylist>,
) -> Result<TrackPlaylist, PullError> {
    let query = directive_query(&directives.unwrap_or_default(), skip && previous.is_some());
    let f = channel.get(format!("{name}/index.m3u8{query}"), timeout, "playlist").await?;
    let parsed = MediaPlaylist::parse(&String::from_utf8_lossy(&f.body))?;
    let track = TrackPlaylist::update(previous, parsed)?;
    if let (Some(prev), Some(now)) = (previous, track.last_msn()) {
        if now < prev.last_msn().unwrap_or(0) || track.first_msn() < prev.first_msn() {
            return Err(PullError::Backwards);
        }
    }
    channel.note_reports(&track.playlist);
    Ok(track)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_facts() {
        assert_eq!(init_id("init.mp4").ok(), Some(0));
        assert_eq!(init_id("init3.mp4").ok(), Some(3));
        assert!(init_id("init0.mp4").is_err() && init_id("x.mp4").is_err());
        assert_eq!(part_id("part42.m4s").ok(), Some(42));
        assert!(part_id("seg4.m4s").is_err());
        let master = MultivariantPlaylist::parse(
            "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",CHANNELS=\"2\",URI=\"audio/index.m3u8\"\n\
             #EXT-X-STREAM-INF:BANDWIDTH=900000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,AUDIO=\"audio\"\nsource/index.m3u8\n",
        )
        .expect("parses");
        let v = rendition_info(&master, "source").expect("source");
        assert!(v.is_video && v.codec == "avc1.64001f" && v.resolution == Some((1280, 720)));
        let a = rendition_info(&master, "audio").expect("audio");
        assert!(!a.is_video && a.codec == "mp4a.40.2" && a.channels == Some(2));
        assert!(rendition_info(&master, "720p").is_none());
    }

    #[test]
    fn a_new_pull_starts_a_few_segments_back() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:10\n#EXT-X-PART-INF:PART-TARGET=0.2\n\
#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.0,\nseg10.m4s\n#EXTINF:2.0,\nseg11.m4s\n\
#EXT-X-PART:DURATION=0.2,URI=\"part120.m4s\",INDEPENDENT=YES\n#EXTINF:0.2,\nseg12.m4s\n\
#EXT-X-PART:DURATION=0.2,URI=\"part121.m4s\",INDEPENDENT=YES\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part122.m4s\"\n";
        let track = TrackPlaylist::update(None, MediaPlaylist::parse(text).expect("parses")).expect("full");
        // Two back from the open segment 13 is 11, which lists no parts: start at 12.
        assert_eq!(start_position(&track, 2), Position { msn: 12, part: 0 });
        assert_eq!(start_position(&track, 0), Position { msn: 13, part: 0 });
    }
}
