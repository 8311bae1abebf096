"""A chat bot on the `irc` package (jaraco/irc, not ours): connects to OnAir's IRC gateway with a
chat token, asks for IRCv3 tags and Twitch's capabilities, joins the channel, says one line and
records what it hears. Prints one JSON object: {nick, caps, joined, messages: [{nick, text, tags}],
notices, errors}.

Usage: python3 irc_bot.py HOST PORT TOKEN NICK CHANNEL TEXT SECONDS
"""
import json
import sys
import time

import irc.client

host, port, token, nick, channel, text, seconds = sys.argv[1:8]
out = {"nick": None, "caps": [], "joined": False, "messages": [], "notices": [], "errors": []}
reactor = irc.client.Reactor()


def on_welcome(conn, event):
    out["nick"] = event.target
    conn.cap("REQ", "message-tags", "server-time", "twitch.tv/tags", "twitch.tv/commands")


def on_cap(conn, event):
    if len(event.arguments) >= 2 and event.arguments[0] == "ACK":
        out["caps"] = event.arguments[1].split()
        conn.join("#" + channel)


def on_join(conn, event):
    if irc.client.NickMask(event.source).nick == conn.get_nickname():
        out["joined"] = True
        conn.privmsg("#" + channel, text)


def on_pubmsg(conn, event):
    tags = {t["key"]: t["value"] for t in (event.tags or [])}
    out["messages"].append({"nick": irc.client.NickMask(event.source).nick, "text": event.arguments[0], "tags": tags})


def on_notice(conn, event):
    out["notices"].append(event.arguments[0] if event.arguments else "")


def on_error(conn, event):
    out["errors"].append(" ".join(str(a) for a in event.arguments) or event.type)


try:
    conn = reactor.server().connect(host, int(port), nick, password="oauth:" + token, username=nick)
except irc.client.ServerConnectionError as e:
    out["errors"].append(str(e))
    print(json.dumps(out))
    sys.exit(0)
conn.add_global_handler("welcome", on_welcome)
conn.add_global_handler("cap", on_cap)
conn.add_global_handler("join", on_join)
conn.add_global_handler("pubmsg", on_pubmsg)
conn.add_global_handler("pubnotice", on_notice)
conn.add_global_handler("privnotice", on_notice)
for kind in ["error", "bannedfromchan", "badchannelkey", "passwdmismatch", "nicknameinuse"]:
    conn.add_global_handler(kind, on_error)
end = time.time() + float(seconds)
while time.time() < end:
    reactor.process_once(0.1)
conn.disconnect("bye")
print(json.dumps(out))
