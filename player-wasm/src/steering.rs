//! Content Steering (RFC 8216bis §4.4.6.6, §7) for the player, sans-IO: reading a Steering
//! Manifest and turning its `PATHWAY-PRIORITY` and `PATHWAY-CLONES` into the Multivariant
//! Playlist URLs of the servers to use, best first.
//!
//! The player works with one Multivariant Playlist per server. The base pathway (the one of the
//! playlist in use) keeps that playlist's URL; a clone's server comes from its `URI-REPLACEMENT`:
//! a `PER-VARIANT-URIS` entry `…/hls/CHANNEL/RENDITION/index.m3u8` (what OnAir's Usher sends)
//! names `…/hls/CHANNEL/master.m3u8` on that server, else `HOST` replaces the host name of the
//! current playlist's URL (§7.2, port and path kept). The current URL's query is carried over;
//! a playback token is in the path (`/t/{token}/hls/…`), which the PER-VARIANT-URIS carry.

use std::collections::HashMap;

use serde::Deserialize;

/// `URI-REPLACEMENT` of a pathway clone (§7.1).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct UriReplacement {
    /// Replaces the host name.
    #[serde(rename = "HOST")]
    pub host: Option<String>,
    /// STABLE-VARIANT-ID → URI.
    #[serde(rename = "PER-VARIANT-URIS", default)]
    pub per_variant_uris: HashMap<String, String>,
}

/// A pathway clone (§7.1).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PathwayClone {
    /// The new pathway's id.
    #[serde(rename = "ID")]
    pub id: String,
    /// The pathway it copies.
    #[serde(rename = "BASE-ID")]
    pub base_id: String,
    /// How its URIs differ.
    #[serde(rename = "URI-REPLACEMENT", default)]
    pub uri_replacement: UriReplacement,
}

/// A Steering Manifest (§7.1).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Manifest {
    /// Must be 1.
    #[serde(rename = "VERSION")]
    pub version: u32,
    /// Seconds until the client asks again (default 300).
    #[serde(rename = "TTL", default = "default_ttl")]
    pub ttl_s: f64,
    /// Where to ask next time (relative to the manifest's URL).
    #[serde(rename = "RELOAD-URI")]
    pub reload_uri: Option<String>,
    /// Pathway ids, best first.
    #[serde(rename = "PATHWAY-PRIORITY", default)]
    pub pathway_priority: Vec<String>,
    /// Pathways defined by copying another.
    #[serde(rename = "PATHWAY-CLONES", default)]
    pub pathway_clones: Vec<PathwayClone>,
}

fn default_ttl() -> f64 {
    300.0
}

/// Why a manifest was not used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SteeringError {
    /// Not JSON of the manifest's shape.
    #[error("unreadable steering manifest: {0}")]
    Json(String),
    /// A VERSION other than 1.
    #[error("unsupported steering manifest VERSION {0}")]
    Version(u32),
}

impl Manifest {
    /// Parses a Steering Manifest. Errors: [`SteeringError`].
    pub fn parse(json: &str) -> Result<Self, SteeringError> {
        let m: Manifest = serde_json::from_str(json).map_err(|e| SteeringError::Json(e.to_string()))?;
        if m.version != 1 {
            return Err(SteeringError::Version(m.version));
        }
        Ok(m)
    }

    /// Multivariant Playlist URLs, best first, of the pathways this player can reach from the
    /// playlist `base_url` of pathway `base`: the base itself and clones of it.
    pub fn servers(&self, base: &str, base_url: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for id in &self.pathway_priority {
            let url = if id == base {
                Some(base_url.to_string())
            } else {
                self.pathway_clones.iter().find(|c| &c.id == id && c.base_id == base).and_then(|c| master_of(&c.uri_replacement, base_url))
            };
            if let Some(u) = url.filter(|u| !out.contains(u)) {
                out.push(u);
            }
        }
        out
    }
}

/// `(scheme://authority, path, ?query)` of an absolute URL.
fn split(url: &str) -> Option<(&str, &str, &str)> {
    let scheme_end = url.find("://")? + 3;
    let path_at = url[scheme_end..].find('/').map_or(url.len(), |p| scheme_end + p);
    let query_at = url[path_at..].find('?').map_or(url.len(), |q| path_at + q);
    Some((&url[..path_at], &url[path_at..query_at], &url[query_at..]))
}

/// The clone's Multivariant Playlist URL (see the module documentation).
fn master_of(r: &UriReplacement, base_url: &str) -> Option<String> {
    let (_, _, query) = split(base_url)?;
    let mut variants: Vec<&String> = r.per_variant_uris.values().collect();
    variants.sort();
    if let Some(v) = variants.first() {
        let (origin, path, _) = split(v)?;
        let (channel_dir, _index) = path.rsplit_once('/')?;
        let (channel_dir, _rendition) = channel_dir.rsplit_once('/')?;
        return Some(format!("{origin}{channel_dir}/master.m3u8{query}"));
    }
    let host = r.host.as_deref()?;
    let (origin, path, query) = split(base_url)?;
    let (scheme, authority) = origin.split_once("://")?;
    let port = authority.rsplit_once(':').filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit())).map(|(_, p)| format!(":{p}")).unwrap_or_default();
    Some(format!("{scheme}://{host}{port}{path}{query}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const USHER: &str = r#"{"VERSION":1,"TTL":10,"RELOAD-URI":"/api/v1/steering/demo?base=far",
        "PATHWAY-PRIORITY":["near","far"],
        "PATHWAY-CLONES":[{"BASE-ID":"far","ID":"near","URI-REPLACEMENT":{"HOST":"10.0.0.2",
          "PER-VARIANT-URIS":{"source":"http://10.0.0.2:8082/hls/demo/source/index.m3u8","audio":"http://10.0.0.2:8082/hls/demo/audio/index.m3u8"}}}]}"#;

    #[test]
    fn usher_manifest_orders_the_servers() {
        let m = Manifest::parse(USHER).expect("parses");
        assert_eq!(m.ttl_s, 10.0);
        assert_eq!(m.reload_uri.as_deref(), Some("/api/v1/steering/demo?base=far"));
        let base = "http://10.0.0.1:8081/hls/demo/master.m3u8?token=1.ab";
        assert_eq!(m.servers("far", base), vec!["http://10.0.0.2:8082/hls/demo/master.m3u8?token=1.ab".to_string(), base.to_string()]);
        // A client on another base pathway cannot use clones of "far".
        assert_eq!(m.servers("other", base), Vec::<String>::new());
    }

    #[test]
    fn host_replacement_and_bad_manifests() {
        let m = Manifest::parse(r#"{"VERSION":1,"PATHWAY-PRIORITY":["b","a"],"PATHWAY-CLONES":[{"BASE-ID":"a","ID":"b","URI-REPLACEMENT":{"HOST":"cdn.example"}}]}"#).expect("parses");
        assert_eq!(m.ttl_s, 300.0);
        assert_eq!(m.servers("a", "https://edge.example:8443/hls/x/master.m3u8"), vec!["https://cdn.example:8443/hls/x/master.m3u8", "https://edge.example:8443/hls/x/master.m3u8"]);
        assert_eq!(Manifest::parse(r#"{"VERSION":2}"#), Err(SteeringError::Version(2)));
        assert!(Manifest::parse("not json").is_err());
    }
}
