"""Parse an HLS playlist with the independent `m3u8` package (PyPI) and print it as JSON.

Usage: python3 parse_playlist.py URL
The Rust end-to-end tests assert the LL-HLS checklist on this JSON, so the playlist text is read by a
parser that OnAir did not write.
"""
import json
import sys

import m3u8


def part_json(p):
    return {"uri": p.uri, "duration": p.duration, "independent": p.independent == "YES"}


def main():
    pl = m3u8.load(sys.argv[1])
    if pl.is_variant:
        out = {
            "variant": True,
            "playlists": [
                {
                    "uri": p.uri,
                    "bandwidth": p.stream_info.bandwidth,
                    "average_bandwidth": p.stream_info.average_bandwidth,
                    "codecs": p.stream_info.codecs,
                    "resolution": list(p.stream_info.resolution) if p.stream_info.resolution else None,
                    "frame_rate": p.stream_info.frame_rate,
                    "audio": p.stream_info.audio,
                }
                for p in pl.playlists
            ],
            "media": [{"type": m.type, "group_id": m.group_id, "uri": m.uri, "channels": m.channels} for m in pl.media],
        }
    else:
        sc = pl.server_control
        out = {
            "variant": False,
            "version": pl.version,
            "target_duration": pl.target_duration,
            "media_sequence": pl.media_sequence,
            "endlist": pl.is_endlist,
            "part_target": pl.part_inf.part_target if pl.part_inf else None,
            "server_control": {
                "can_block_reload": sc.can_block_reload,
                "part_hold_back": sc.part_hold_back,
                "hold_back": sc.hold_back,
                "can_skip_until": sc.can_skip_until,
            }
            if sc
            else None,
            "skipped_segments": pl.skip.skipped_segments if pl.skip else 0,
            "init": pl.segment_map[0].uri if pl.segment_map else None,
            "segments": [
                {
                    "uri": s.uri,
                    "duration": s.duration,
                    "program_date_time": s.program_date_time.isoformat() if s.program_date_time else None,
                    "parts": [part_json(p) for p in s.parts],
                }
                for s in pl.segments
            ],
            "preload_hint": {"type": pl.preload_hint.hint_type, "uri": pl.preload_hint.uri} if pl.preload_hint else None,
            "rendition_reports": [
                {"uri": r.uri, "last_msn": r.last_msn, "last_part": r.last_part} for r in pl.rendition_reports
            ],
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
