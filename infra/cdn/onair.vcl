# Varnish (6.0+, Debian 12 ships 7.1) in front of an OnAir node (origin or relay) for LL-HLS.
# Load with: varnishd -a :6081 -f /path/to/onair.vcl -s malloc,1G
# OnAir's headers do the work: parts and segments are `public, max-age=6×TD, immutable`, playlists
# carry `stale-while-revalidate=0, stale-if-error=0` (Varnish takes beresp.grace from it, so a live
# playlist is never served stale), and relay errors are `no-store`. This file only adds what a
# stock configuration gets wrong for blocking requests.
vcl 4.1;

backend onair {
    .host = "127.0.0.1";
    .port = "8080";
    # A blocking playlist reload or a Preload Hint request is held by OnAir for up to 3 × the
    # target duration (6 s with 2 s segments): the default 60 s is fine, but a short one breaks LL-HLS.
    .first_byte_timeout = 15s;
    .between_bytes_timeout = 15s;
    .connect_timeout = 1s;
}

sub vcl_recv {
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    # Media and playlists are the same for everyone: no cookies in the cache key.
    if (req.url ~ "^(/t/[^/]+)?/hls/") {
        unset req.http.Cookie;
        unset req.http.Authorization;
        # Requests for the same URL (the same _HLS_msn/_HLS_part) collapse onto one backend fetch:
        # Varnish's waiting list wakes them when it lands (no polling).
        return (hash);
    }
    # Pages, the API (playback tokens, viewer heartbeats) and /metrics are per client.
    return (pass);
}

sub vcl_backend_response {
    if (bereq.url ~ "^(/t/[^/]+)?/hls/") {
        unset beresp.http.Set-Cookie;
        # A 5xx or a relay's 404 comes with no-store; anything else uncacheable is not kept either.
        if (beresp.status >= 500) {
            set beresp.uncacheable = true;
            set beresp.ttl = 0s;
            return (deliver);
        }
    }
}

sub vcl_deliver {
    # Lets operators see cache behaviour; remove in production if undesired.
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
