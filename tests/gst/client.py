#!/usr/bin/python3
"""A meeting participant on GStreamer's webrtcbin, written from docs/signaling.md and docs/api.md alone: it
joins by a meeting's link, publishes a test pattern (VP8) and a tone (Opus), decodes what it receives, and prints
one JSON line of counts when it stops. It keeps webrtcbin's defaults: its own RSA 2048 DTLS certificate and
libnice's keepalives (Binding indications).

usage: client.py BASE_URL MEETING_ID NAME SECONDS
"""
import asyncio
import json
import sys
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

import websockets  # noqa: E402

Gst.init(None)
base, meeting, name, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    return json.loads(urllib.request.urlopen(request, timeout=10).read())


class Client:
    def __init__(self, loop):
        self.loop = loop
        self.ws = None
        self.sections = []
        self.counts = {"video_frames": 0, "audio_buffers": 0, "offers": 0, "errors": []}
        self.pipe = Gst.parse_launch(
            "webrtcbin name=w bundle-policy=max-bundle "
            "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1 ! "
            "vp8enc deadline=1 ! rtpvp8pay pt=96 ! application/x-rtp,media=video,encoding-name=VP8,payload=96 ! "
            "queue ! w. "
            "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc ! rtpopuspay pt=111 ! "
            "application/x-rtp,media=audio,encoding-name=OPUS,payload=111 ! queue ! w."
        )
        self.w = self.pipe.get_by_name("w")
        # libnice gathers no loopback candidates by itself (docs: the server learns our address from our checks).
        # PyGObject drops one reference too many on this property (GStreamer 1.22): hold an extra one.
        self.ice = self.w.get_property("ice-agent")
        self.ice.ref()
        self.ice.emit("add-local-ip-address", "127.0.0.1")
        self.w.connect("on-ice-candidate", self.on_candidate)
        self.w.connect("pad-added", self.on_pad)

    def send(self, message):
        asyncio.run_coroutine_threadsafe(self.ws.send(json.dumps(message)), self.loop)

    def on_candidate(self, _w, mline, candidate):
        mid = self.sections[mline]["mid"] if mline < len(self.sections) else str(mline)
        self.send({"type": "candidate", "candidate": candidate, "sdp_mid": mid})

    def on_pad(self, _w, pad):
        if pad.direction != Gst.PadDirection.SRC:
            return
        decode = Gst.ElementFactory.make("decodebin")
        decode.connect("pad-added", self.on_decoded)
        self.pipe.add(decode)
        decode.sync_state_with_parent()
        pad.link(decode.get_static_pad("sink"))

    def on_decoded(self, _decode, pad):
        kind = pad.get_current_caps().to_string()
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("signal-handoffs", True)
        key = "video_frames" if kind.startswith("video") else "audio_buffers"
        sink.connect("handoff", lambda *_: self.counts.__setitem__(key, self.counts[key] + 1))
        self.pipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

    def on_offer(self, message):
        self.counts["offers"] += 1
        self.sections = message["sections"]
        revision = message["revision"]
        _, sdp = GstSdp.SDPMessage.new_from_text(message["sdp"])
        offer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.OFFER, sdp)

        def answered(promise, _):
            reply = promise.get_reply()
            if reply is None or not reply.has_field("answer"):
                self.counts["errors"].append("no answer from webrtcbin")
                return
            answer = reply.get_value("answer")
            self.w.emit("set-local-description", answer, Gst.Promise.new())
            self.send({"type": "answer", "revision": revision, "sdp": answer.sdp.as_text()})

        def remote_set(_promise, _):
            self.w.emit("create-answer", None, Gst.Promise.new_with_change_func(answered, None))

        self.w.emit("set-remote-description", offer, Gst.Promise.new_with_change_func(remote_set, None))

    async def run(self):
        ticket = post(f"{base}/meetings/{meeting}/join", {"name": name})
        url = ticket["signaling_url"]
        self.pipe.set_state(Gst.State.PLAYING)
        async with websockets.connect(url) as ws:
            self.ws = ws
            await ws.send(json.dumps({"type": "join", "v": 1, "meeting_id": meeting, "token": ticket["participant_token"],
                                      "publish": ["microphone", "camera"]}))
            end = self.loop.time() + seconds
            while self.loop.time() < end:
                try:
                    text = await asyncio.wait_for(ws.recv(), timeout=max(0.1, end - self.loop.time()))
                except asyncio.TimeoutError:
                    break
                message = json.loads(text)
                if message["type"] == "offer":
                    GLib.idle_add(lambda m=message: self.on_offer(m) and False)
                elif message["type"] == "candidate" and message.get("candidate"):
                    index = next((i for i, s in enumerate(self.sections) if s["mid"] == message["sdp_mid"]), 0)
                    self.w.emit("add-ice-candidate", index, message["candidate"])
                elif message["type"] == "error":
                    self.counts["errors"].append(message["message"])
        self.pipe.set_state(Gst.State.NULL)
        print(json.dumps(self.counts), flush=True)


async def main():
    loop = asyncio.get_running_loop()
    glib = GLib.MainLoop()
    import threading
    threading.Thread(target=glib.run, daemon=True).start()
    await Client(loop).run()
    glib.quit()


asyncio.run(main())
