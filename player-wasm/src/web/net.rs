//! HTTP requests with `fetch`, a timeout (AbortController) and timing.

use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, RequestInit, Response};

use super::{describe, now_ms};

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum NetError {
    /// No response: refused, reset, DNS, CORS.
    #[error("network error: {0}")]
    Network(String),
    /// No complete response within the timeout.
    #[error("timed out")]
    Timeout,
    /// A response with a status other than 200.
    #[error("HTTP {0}")]
    Status(u16),
}

/// A complete 200 (or, for a range, 206) response.
pub(crate) struct Fetched {
    /// The body.
    pub body: Vec<u8>,
    /// ms from the response headers to the last byte: the transfer itself.
    pub transfer_ms: f64,
    /// The URL that answered, after any redirect (relative URIs in it resolve against this).
    pub url: String,
}

/// GETs `url`, giving up after `timeout_ms`.
pub(crate) async fn get(url: &str, timeout_ms: f64) -> Result<Fetched, NetError> {
    get_range(url, None, timeout_ms).await
}

/// GETs `range` of `url` (the whole resource when `None`; a recorded segment's bytes in an
/// archive file otherwise, answered 206), giving up after `timeout_ms`.
pub(crate) async fn get_range(url: &str, range: Option<onair_hls::ByteRange>, timeout_ms: f64) -> Result<Fetched, NetError> {
    let window = web_sys::window().ok_or_else(|| NetError::Network("no window".into()))?;
    let abort = AbortController::new().map_err(|e| NetError::Network(describe(&e)))?;
    let init = RequestInit::new();
    init.set_signal(Some(&abort.signal()));
    if let Some(r) = range {
        let headers = web_sys::Headers::new().map_err(|e| NetError::Network(describe(&e)))?;
        headers.set("Range", &r.http_range()).map_err(|e| NetError::Network(describe(&e)))?;
        init.set_headers(&headers);
    }
    let wanted = if range.is_some() { 206 } else { 200 };
    let aborter = {
        let abort = abort.clone();
        wasm_bindgen::closure::Closure::once_into_js(move || abort.abort())
    };
    let timer = window
        .set_timeout_with_callback_and_timeout_and_arguments_0(aborter.unchecked_ref(), timeout_ms as i32)
        .unwrap_or(0);
    let result = async {
        let resp = JsFuture::from(window.fetch_with_str_and_init(url, &init)).await.map_err(|e| classify(&e))?;
        let resp: Response = resp.dyn_into().map_err(|e| NetError::Network(describe(&e)))?;
        let headers_at = now_ms();
        if resp.status() != wanted {
            return Err(NetError::Status(resp.status()));
        }
        let buf = resp.array_buffer().map_err(|e| NetError::Network(describe(&e)))?;
        let buf: ArrayBuffer = JsFuture::from(buf).await.map_err(|e| classify(&e))?.unchecked_into();
        Ok(Fetched { body: Uint8Array::new(&buf).to_vec(), transfer_ms: now_ms() - headers_at, url: resp.url() })
    }
    .await;
    window.clear_timeout_with_handle(timer);
    result
}

fn classify(e: &JsValue) -> NetError {
    let name = js_sys::Reflect::get(e, &"name".into()).ok().and_then(|n| n.as_string()).unwrap_or_default();
    if name == "AbortError" {
        NetError::Timeout
    } else {
        NetError::Network(describe(e))
    }
}

/// GETs `url` as UTF-8 text.
pub(crate) async fn get_text(url: &str, timeout_ms: f64) -> Result<(String, Fetched), NetError> {
    let f = get(url, timeout_ms).await?;
    let text = String::from_utf8_lossy(&f.body).into_owned();
    Ok((text, f))
}
