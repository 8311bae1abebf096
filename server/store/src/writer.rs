//! The write side: a publish [`Session`] owns a broadcast, and each rendition has one
//! [`RenditionWriter`] claimed by that session. "One writer" is these types, not a convention.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::broadcast::{Broadcast, BroadcastState, Phase};
use crate::rendition::{NewPart, Placement, Rendition, RenditionInfo};


/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The broadcast is no longer this session's to write: another session took it over or
    /// resumed it, or this session was interrupted. The writer must stop.
    #[error("the broadcast is owned by another publish session")]
    NotOwner,
    /// The broadcast or the rendition ended.
    #[error("the broadcast has ended")]
    Ended,
    /// The session already holds the writer of this rendition.
    #[error("rendition {0} already has a writer")]
    Claimed(String),
    /// The part would make the open segment longer than the store's `max_segment` (the
    /// encoder's key-frame interval is too long).
    #[error("segment would exceed {max_ms} ms: the key-frame interval is too long")]
    SegmentTooLong {
        /// The bound, ms.
        max_ms: u64,
    },
    /// A [`Placement::At`] that does not move the numbering forward.
    #[error("part {part_id} of segment {msn} is out of order: {reason}")]
    Numbering {
        /// The requested Media Sequence Number.
        msn: u64,
        /// The requested part id.
        part_id: u64,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Ok if `session` owns the broadcast in `state` and it is live.
fn writable(state: &BroadcastState, session: u64) -> Result<(), WriteError> {
    match state.phase {
        Phase::Ended(_) => Err(WriteError::Ended),
        Phase::Live if state.session == session => Ok(()),
        _ => Err(WriteError::NotOwner),
    }
}

/// Claims the writer of rendition `info.name` for `session`; creates the rendition with `init`
/// (init id `init_id`, else 0), or continues an existing one after a discontinuity with `init`.
fn claim(broadcast: &Arc<Broadcast>, session: u64, info: RenditionInfo, init: Bytes, init_id: Option<u64>) -> Result<RenditionWriter, WriteError> {
    // Holding the state read lock keeps a takeover from landing between the check and the claim.
    let state = broadcast.state.borrow();
    writable(&state, session)?;
    let name = info.name.clone();
    let (rendition, existing) = broadcast.rendition_or_insert(info, init, init_id.unwrap_or(0));
    if rendition.claimed_by.swap(session, Ordering::AcqRel) == session {
        return Err(WriteError::Claimed(name));
    }
    if let Some((info, init)) = existing {
        rendition.reconfigure(info, init, init_id);
    }
    drop(state);
    Ok(RenditionWriter { broadcast: broadcast.clone(), rendition, session })
}

/// A publish session's ownership of a broadcast, from [`crate::Store::start`]. Not `Clone`: the
/// publisher holds it. Dropping it while it still owns a live broadcast interrupts the broadcast
/// (the publisher may come back within the grace period).
#[derive(Debug)]
pub struct Session {
    broadcast: Arc<Broadcast>,
    id: u64,
}

impl Session {
    pub(crate) fn new(broadcast: Arc<Broadcast>, id: u64) -> Self {
        Session { broadcast, id }
    }

    /// The broadcast.
    pub fn broadcast(&self) -> &Arc<Broadcast> {
        &self.broadcast
    }

    /// This session's id (see [`crate::BroadcastState::session`]).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// True while this session owns the broadcast and it has not ended.
    pub fn owns(&self) -> bool {
        let s = self.broadcast.state();
        s.session == self.id && !matches!(s.phase, Phase::Ended(_))
    }

    /// Claims the writer of rendition `info.name` (see [`SessionRef::writer`]).
    /// Errors: [`WriteError::NotOwner`], [`WriteError::Ended`], [`WriteError::Claimed`].
    pub fn writer(&self, info: RenditionInfo, init: Bytes) -> Result<RenditionWriter, WriteError> {
        claim(&self.broadcast, self.id, info, init, None)
    }

    /// A clonable reference that may claim writers (for the transcoder's rungs on their thread)
    /// but cannot end or interrupt the broadcast.
    pub fn reference(&self) -> SessionRef {
        SessionRef { broadcast: self.broadcast.clone(), id: self.id }
    }

    /// Ends the broadcast (EXT-X-ENDLIST on every rendition) if this session still owns it.
    /// Returns true if it ended it.
    pub fn end(&self) -> bool {
        self.broadcast.transition(|s| s.session == self.id && !matches!(s.phase, Phase::Ended(_)), Phase::Ended(SystemTime::now()))
    }

    /// Marks the broadcast interrupted if this session still owns it live: playlists stay open for
    /// a publisher to resume. Returns true if it did.
    pub fn interrupt(&self) -> bool {
        self.broadcast.transition(|s| s.session == self.id && s.phase == Phase::Live, Phase::Interrupted(SystemTime::now()))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.interrupt();
    }
}

/// A session's right to claim rendition writers, without the right to end the broadcast.
#[derive(Debug, Clone)]
pub struct SessionRef {
    broadcast: Arc<Broadcast>,
    id: u64,
}

impl SessionRef {
    /// Claims the writer of rendition `info.name`: creates the rendition with `init`, or, if it
    /// exists (a resumed broadcast), continues it after a discontinuity with `init`.
    /// Errors: [`WriteError::NotOwner`] once the session lost the broadcast, [`WriteError::Ended`],
    /// [`WriteError::Claimed`] if this session already holds that writer.
    pub fn writer(&self, info: RenditionInfo, init: Bytes) -> Result<RenditionWriter, WriteError> {
        claim(&self.broadcast, self.id, info, init, None)
    }

    /// Claims the writer of rendition `info.name` with its init segment numbered `init_id` (a
    /// relay mirroring its upstream's `init{id}.mp4`); otherwise as [`SessionRef::writer`].
    /// Errors: as [`SessionRef::writer`].
    pub fn import_writer(&self, info: RenditionInfo, init_id: u64, init: Bytes) -> Result<RenditionWriter, WriteError> {
        claim(&self.broadcast, self.id, info, init, Some(init_id))
    }
}

/// The one writer of a rendition, bound to the session that claimed it. Not `Clone`.
/// Dropped while its session still owns the broadcast, it interrupts the rendition (the open
/// segment closes; the next part starts a new segment after EXT-X-DISCONTINUITY). A writer whose
/// session was taken over writes nothing, and its drop does nothing.
#[derive(Debug)]
pub struct RenditionWriter {
    broadcast: Arc<Broadcast>,
    rendition: Arc<Rendition>,
    session: u64,
}

impl RenditionWriter {
    /// The rendition written.
    pub fn rendition(&self) -> &Arc<Rendition> {
        &self.rendition
    }

    /// Runs `write` if the session owns the broadcast live, holding the state so that no takeover
    /// lands in between.
    fn owned<T>(&self, write: impl FnOnce(&Rendition) -> Result<T, WriteError>) -> Result<T, WriteError> {
        let state = self.broadcast.state.borrow();
        writable(&state, self.session)?;
        write(&self.rendition)
    }

    /// Appends a finished part at `placement` and wakes every waiter; returns the part's id.
    /// Errors: [`WriteError::NotOwner`], [`WriteError::Ended`], [`WriteError::SegmentTooLong`],
    /// [`WriteError::Numbering`].
    pub fn append(&self, placement: Placement, part: NewPart) -> Result<u64, WriteError> {
        self.owned(|r| r.append(placement, part))
    }

    /// The encoder changed configuration: continues after a discontinuity with `info` and `init`
    /// (reusing the id of an identical init segment held). Returns the init id.
    /// Errors: [`WriteError::NotOwner`], [`WriteError::Ended`].
    pub fn reconfigure(&self, info: RenditionInfo, init: Bytes) -> Result<u64, WriteError> {
        self.owned(|r| Ok(r.reconfigure(info, init, None)))
    }

    /// Like [`RenditionWriter::reconfigure`], with the init id taken from elsewhere (a relay
    /// mirrors its upstream's `init{id}.mp4` names). Errors: as `reconfigure`.
    pub fn import_init(&self, init_id: u64, info: RenditionInfo, init: Bytes) -> Result<(), WriteError> {
        self.owned(|r| {
            r.reconfigure(info, init, Some(init_id));
            Ok(())
        })
    }

    /// Ends the rendition and removes it from the broadcast (a transcoder rung that failed).
    pub fn remove(self) {
        if self.owned(|_| Ok(())).is_ok() {
            self.broadcast.remove_rendition(self.rendition.name());
        }
    }
}

impl Drop for RenditionWriter {
    fn drop(&mut self) {
        let state = self.broadcast.state();
        if state.session == self.session && !matches!(state.phase, Phase::Ended(_)) {
            self.rendition.interrupt();
        }
        let _ = self.rendition.claimed_by.compare_exchange(self.session, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}
