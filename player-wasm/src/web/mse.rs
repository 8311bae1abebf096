//! Media Source Extensions: opening a MediaSource on a `<video>` and a serialised operation queue
//! per SourceBuffer (append, remove, timestampOffset, changeType each wait for `updateend`).

use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use web_sys::{HtmlMediaElement, MediaSource, MediaSourceReadyState, SourceBuffer, TimeRanges, Url};

use super::describe;

/// Opens a MediaSource on `video` and waits for `sourceopen`.
pub(crate) async fn open(video: &HtmlMediaElement) -> Result<(MediaSource, String), JsValue> {
    let ms = MediaSource::new()?;
    let url = Url::create_object_url_with_source(&ms)?;
    let opened = js_sys::Promise::new(&mut |resolve, _| ms.set_onsourceopen(Some(&resolve)));
    video.set_src(&url);
    JsFuture::from(opened).await?;
    ms.set_onsourceopen(None);
    Ok((ms, url))
}

/// One SourceBuffer. Every operation waits for the previous one (`updating` false), so the track
/// task that owns it is its queue: operations happen in the order the task issues them.
pub(crate) struct Track {
    sb: SourceBuffer,
    mime: String,
}

/// A SourceBuffer operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("SourceBuffer {op}: {message}")]
pub(crate) struct MseError {
    op: &'static str,
    message: String,
    /// The browser's quota was exceeded (QuotaExceededError): remove old media and retry.
    pub quota: bool,
}

impl Track {
    /// Adds a SourceBuffer for `mime` (e.g. `video/mp4; codecs="avc1.64001f"`).
    pub(crate) fn add(ms: &MediaSource, mime: &str) -> Result<Track, MseError> {
        let sb = ms.add_source_buffer(mime).map_err(|e| err("addSourceBuffer", &e))?;
        Ok(Track { sb, mime: mime.to_string() })
    }

    async fn settle(&self, op: &'static str) -> Result<(), MseError> {
        if !self.sb.updating() {
            return Ok(());
        }
        let done = js_sys::Promise::new(&mut |resolve, reject| {
            self.sb.set_onupdateend(Some(&resolve));
            self.sb.set_onerror(Some(&reject));
        });
        let r = JsFuture::from(done).await;
        self.sb.set_onupdateend(None);
        self.sb.set_onerror(None);
        r.map(|_| ()).map_err(|e| err(op, &e))
    }

    /// Appends an init segment or media fragment (the browser copies it out of wasm memory).
    pub(crate) async fn append(&self, data: &mut [u8]) -> Result<(), MseError> {
        self.settle("append").await?;
        self.sb.append_buffer_with_u8_array(data).map_err(|e| err("appendBuffer", &e))?;
        self.settle("append").await
    }

    /// Removes media in `[start, end)` seconds.
    pub(crate) async fn remove(&self, start: f64, end: f64) -> Result<(), MseError> {
        if end <= start {
            return Ok(());
        }
        self.settle("remove").await?;
        self.sb.remove(start, end).map_err(|e| err("remove", &e))?;
        self.settle("remove").await
    }

    /// Sets `timestampOffset` (seconds added to every following fragment's times).
    pub(crate) async fn set_offset(&self, offset: f64) -> Result<(), MseError> {
        self.settle("timestampOffset").await?;
        self.sb.set_timestamp_offset(offset);
        Ok(())
    }

    /// Switches codecs (`changeType`) when the next init segment's MIME type differs.
    pub(crate) async fn change_type(&mut self, mime: &str) -> Result<(), MseError> {
        if mime == self.mime {
            return Ok(());
        }
        self.settle("changeType").await?;
        self.sb.change_type(mime).map_err(|e| err("changeType", &e))?;
        self.mime = mime.to_string();
        Ok(())
    }

    /// End of the last buffered range, seconds.
    pub(crate) fn buffered_end(&self) -> Option<f64> {
        self.sb.buffered().ok().and_then(|r| last_end(&r))
    }

    /// Start of the first buffered range, seconds.
    pub(crate) fn buffered_start(&self) -> Option<f64> {
        self.sb.buffered().ok().and_then(|r| r.start(0).ok())
    }
}

fn err(op: &'static str, e: &JsValue) -> MseError {
    let name = js_sys::Reflect::get(e, &"name".into()).ok().and_then(|n| n.as_string()).unwrap_or_default();
    MseError { op, message: describe(e), quota: name == "QuotaExceededError" }
}

/// End of the last range.
pub(crate) fn last_end(r: &TimeRanges) -> Option<f64> {
    r.length().checked_sub(1).and_then(|i| r.end(i).ok())
}

/// The ranges as `(start, end)` pairs.
pub(crate) fn ranges(r: &TimeRanges) -> Vec<(f64, f64)> {
    (0..r.length()).filter_map(|i| Some((r.start(i).ok()?, r.end(i).ok()?))).collect()
}

/// True while the MediaSource accepts appends.
pub(crate) fn is_open(ms: &MediaSource) -> bool {
    ms.ready_state() == MediaSourceReadyState::Open
}

/// Leaves out the variants this browser cannot decode (`MediaSource.isTypeSupported`), e.g. HEVC
/// in Chromium: a channel with an HEVC source still plays from its H.264 rungs. Variants without
/// CODECS are kept (their codecs are read from the init segment later).
pub(crate) fn keep_playable(master: &mut onair_hls::MultivariantPlaylist) {
    let playable: Vec<bool> = (0..master.variants.len())
        .map(|i| master.variants[i].codecs.is_empty() || MediaSource::is_type_supported(&crate::variants::mime_types(master, i).0))
        .collect();
    let mut keep = playable.into_iter();
    master.variants.retain(|_| keep.next().unwrap_or(false));
}
