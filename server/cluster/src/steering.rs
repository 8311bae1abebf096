//! The Steering Manifest (RFC 8216bis §7.1) Usher serves for Content Steering, sans-IO: the
//! ranked servers of a decision as `PATHWAY-PRIORITY`, and a `PATHWAY-CLONES` entry for each
//! server other than the client's current base pathway, mapping every rendition's
//! `STABLE-VARIANT-ID` / `STABLE-RENDITION-ID` (the rendition name) to that server's Media
//! Playlist URI (`PER-VARIANT-URIS`, `PER-RENDITION-URIS`: unlike `HOST`, they carry the port).

use serde_json::{json, Map, Value};

use crate::usher::Offered;

/// The host name of `url` (`edge-1` for `http://edge-1:8080/x`).
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// The Steering Manifest for a client on pathway `base` (the PATHWAY-ID of the Multivariant
/// Playlist it loaded) of `channel` with `renditions`: `offered` (Usher's servers for it, best
/// first; each node id is its PATHWAY-ID) in `PATHWAY-PRIORITY`, `base` last when not among them (it stays a fallback), a clone of
/// `base` per other server, a `TTL` of `ttl_s` seconds and `RELOAD-URI`.
pub fn manifest(offered: &[Offered], base: &str, channel: &str, renditions: &[String], ttl_s: u32, reload_uri: &str) -> Value {
    let mut priority: Vec<&str> = offered.iter().map(|p| p.node.as_str()).collect();
    if !priority.contains(&base) {
        priority.push(base);
    }
    let clones: Vec<Value> = offered
        .iter()
        .filter(|p| p.node != base)
        .map(|p| {
            let uris: Map<String, Value> = renditions.iter().map(|r| (r.clone(), Value::String(format!("{}/hls/{channel}/{r}/index.m3u8", p.base_url)))).collect();
            json!({
                "BASE-ID": base,
                "ID": p.node,
                "URI-REPLACEMENT": { "HOST": host_of(&p.base_url), "PER-VARIANT-URIS": uris, "PER-RENDITION-URIS": uris },
            })
        })
        .collect();
    json!({ "VERSION": 1, "TTL": ttl_s, "RELOAD-URI": reload_uri, "PATHWAY-PRIORITY": priority, "PATHWAY-CLONES": clones })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_and_clones() {
        let offered = vec![Offered { node: "b".into(), base_url: "http://10.0.0.2:8081".into() }, Offered { node: "a".into(), base_url: "http://10.0.0.1:8080".into() }];
        let renditions = vec!["source".to_string(), "audio".to_string()];
        let m = manifest(&offered, "a", "demo", &renditions, 10, "/api/v1/steering/demo?base=a");
        assert_eq!(m["VERSION"], 1);
        assert_eq!(m["TTL"], 10);
        assert_eq!(m["PATHWAY-PRIORITY"], json!(["b", "a"]));
        let clones = m["PATHWAY-CLONES"].as_array().expect("clones");
        assert_eq!(clones.len(), 1, "the base pathway is not cloned");
        assert_eq!(clones[0]["BASE-ID"], "a");
        assert_eq!(clones[0]["ID"], "b");
        assert_eq!(clones[0]["URI-REPLACEMENT"]["HOST"], "10.0.0.2");
        assert_eq!(clones[0]["URI-REPLACEMENT"]["PER-VARIANT-URIS"]["source"], "http://10.0.0.2:8081/hls/demo/source/index.m3u8");
        assert_eq!(clones[0]["URI-REPLACEMENT"]["PER-RENDITION-URIS"]["audio"], "http://10.0.0.2:8081/hls/demo/audio/index.m3u8");
        // A base Usher no longer offers stays last, as a fallback.
        let m = manifest(&offered[..1], "c", "demo", &renditions, 10, "/r");
        assert_eq!(m["PATHWAY-PRIORITY"], json!(["b", "c"]));
        assert_eq!(host_of("https://user@[2001:db8::1]:443/x"), "2001:db8::1");
        assert_eq!(host_of("http://edge-1"), "edge-1");
    }
}
