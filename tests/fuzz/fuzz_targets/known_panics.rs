//! Shared by the fuzz targets that parse HEVC parameter sets and AV1 sequence headers.

/// scuffle-h265 0.2.2 (and its scuffle-expgolomb reader) overflow on some malformed SPS (see
/// `onair_media::hevc::sps_facts`, which turns that panic into an error; `onair_media::av1` guards
/// scuffle-av1 the same way). libFuzzer's panic hook would abort on it even though it is
/// caught, so panics located inside those crates are let through to `catch_unwind`; every other
/// panic still aborts and is reported.
pub fn tolerate_known_third_party_panic() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.location().is_some_and(|l| l.file().contains("/scuffle-")) {
                return;
            }
            previous(info);
        }));
    });
}

