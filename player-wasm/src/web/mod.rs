//! The browser side: I/O only. Everything it decides comes from the pure modules of the crate.

pub(crate) mod api;
pub(crate) mod control;
pub(crate) mod loader;
pub(crate) mod mse;
pub(crate) mod net;
pub(crate) mod state;
pub(crate) mod supervisor;

use wasm_bindgen::JsValue;

/// Resolves after `ms` milliseconds (a `setTimeout` promise).
pub(crate) async fn sleep(ms: f64) {
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms.max(0.0) as i32);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// A monotonic clock in ms (`performance.now()`).
pub(crate) fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or_else(js_sys::Date::now, |p| p.now())
}

/// The wall clock in ms since the Unix epoch (`Date.now()`).
pub(crate) fn wall_ms() -> f64 {
    js_sys::Date::now()
}

/// A JavaScript error value's message, for logs and events.
pub(crate) fn describe(e: &JsValue) -> String {
    e.as_string()
        .or_else(|| js_sys::Reflect::get(e, &"message".into()).ok().and_then(|m| m.as_string()))
        .unwrap_or_else(|| format!("{e:?}"))
}

/// Writes a line to the browser console.
pub(crate) fn log(msg: &str) {
    web_sys::console::log_1(&JsValue::from_str(&format!("[onair] {msg}")));
}
