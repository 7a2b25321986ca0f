"""The network test bed: a visit whose petitioner sits behind an impaired link, and what
each side receives, from its own page's ``getStats()``.

The petitioner's terminal is Chromium in a network namespace whose only way to the server is
the user-space link of :mod:`tests.netimpair`; the judge is Chromium on the host. Both send
a 640x480 30 fps camera (a y4m file) and Chromium's fake microphone. The server listens on
the host's address of the link over HTTP, which both browsers are told to treat as a secure
origin (camera and microphone need one). Used by tests/test_network.py and
scripts/bench_network.py.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from playwright.sync_api import expect, sync_playwright

from tests.conftest import (
    CHROMIUM,
    LiveServer,
    launch_chromium,
    start_live_server,
    stop_live_server,
)
from tests.helpers import wait_until
from tests.live import beside_playwright, checked_in_visit
from tests.media_fixtures import write_counter_y4m
from tests.netimpair import ImpairedLink, impaired_namespace
from tests.netns import staff_in_call

# A sampler in each page: every 100 ms it reads the page's subscribing connection's
# getStats() and adds what arrived since the last reading to running totals (a connection
# replaced by a new one starts its own counters), and notes when new video frames were
# decoded. A window (start/read) is the difference of totals between two moments.
SAMPLER = """() => {
  if (window.__vrRecv) return;
  const R = { gen: 0, pc: null, last: new Map(), lastFrameAt: null, frameTicks: [], win: null,
              pub: null, pubGen: 0, limits: { none: 0, cpu: 0, bandwidth: 0, other: 0 },
              out: { encoded: 0, sent: 0 },
              tot: { frames: 0, videoBytes: 0, freezes: 0, freezeS: 0, lost: 0, received: 0,
                     concealed: 0, samples: 0, framesReceived: 0, framesDropped: 0, nacks: 0,
                     plis: 0, rtx: 0 } };
  const FIELDS = ["framesDecoded", "bytesReceived", "freezeCount", "totalFreezesDuration",
                  "packetsLost", "packetsReceived", "concealedSamples", "totalSamplesReceived",
                  "framesReceived", "framesDropped", "nackCount", "pliCount",
                  "retransmittedPacketsReceived"];
  let busy = false;
  async function sending() {  // why this page's own camera encoder held back, in seconds
    const pub = window.vrCall && window.vrCall.publisher;
    if (!pub) return;
    if (pub !== R.pub) { R.pub = pub; R.pubGen += 1; }
    (await pub.getStats()).forEach((s) => {
      if (s.type !== "outbound-rtp" || s.kind !== "video" || !s.qualityLimitationDurations) return;
      const key = "pub" + R.pubGen + "/" + s.id;
      const prev = R.last.get(key) || {};
      Object.keys(R.limits).forEach((k) => {
        R.limits[k] += Math.max(0, (s.qualityLimitationDurations[k] || 0) - (prev[k] || 0));
      });
      R.out.encoded += Math.max(0, (s.framesEncoded || 0) - (prev.framesEncoded || 0));
      R.out.sent += Math.max(0, (s.framesSent || 0) - (prev.framesSent || 0));
      R.last.set(key, { ...s.qualityLimitationDurations, framesEncoded: s.framesEncoded || 0,
                        framesSent: s.framesSent || 0 });
    });
  }
  async function tick() {
    const pc = window.vrCall && window.vrCall.subscriber;
    if (busy || !pc) return;
    busy = true;
    try {
      await sending();
      if (pc !== R.pc) { R.pc = pc; R.gen += 1; }
      const stats = await pc.getStats();
      const now = Date.now();
      let frames = 0, height = 0;
      stats.forEach((s) => {
        if (s.type !== "inbound-rtp") return;
        const key = R.gen + "/" + s.id;
        const prev = R.last.get(key) || {};
        const d = (f) => Math.max(0, (s[f] || 0) - (prev[f] || 0));
        R.tot.lost += d("packetsLost");
        R.tot.received += d("packetsReceived");
        if (s.kind === "video") {
          frames += d("framesDecoded");
          R.tot.videoBytes += d("bytesReceived");
          R.tot.freezes += d("freezeCount");
          R.tot.freezeS += d("totalFreezesDuration");
          R.tot.framesReceived += d("framesReceived");
          R.tot.framesDropped += d("framesDropped");
          R.tot.nacks += d("nackCount");
          R.tot.plis += d("pliCount");
          R.tot.rtx += d("retransmittedPacketsReceived");
          if (d("framesDecoded") > 0) height = Math.max(height, s.frameHeight || 0);
        } else if (s.kind === "audio") {
          R.tot.concealed += d("concealedSamples");
          R.tot.samples += d("totalSamplesReceived");
        }
        const cur = {};
        FIELDS.forEach((f) => { cur[f] = s[f] || 0; });
        R.last.set(key, cur);
      });
      R.tot.frames += frames;
      if (frames > 0) {
        if (R.win) {
          const since = Math.max(R.lastFrameAt === null ? R.win.at : R.lastFrameAt, R.win.at);
          R.win.maxGap = Math.max(R.win.maxGap, now - since);
          R.win.heights.push(height);
        }
        R.lastFrameAt = now;
        R.frameTicks.push(now);
        if (R.frameTicks.length > 5000) R.frameTicks.shift();
      }
    } finally { busy = false; }
  }
  R.start = () => {
    R.win = { at: Date.now(), tot: { ...R.tot }, limits: { ...R.limits }, out: { ...R.out },
              maxGap: 0, heights: [] };
  };
  R.read = () => {
    const w = R.win, now = Date.now();
    const since = Math.max(R.lastFrameAt === null ? w.at : R.lastFrameAt, w.at);
    const delta = {};
    Object.keys(R.tot).forEach((k) => { delta[k] = R.tot[k] - w.tot[k]; });
    const limits = {};
    Object.keys(R.limits).forEach((k) => { limits[k] = R.limits[k] - w.limits[k]; });
    const out = {};
    Object.keys(R.out).forEach((k) => { out[k] = R.out[k] - w.out[k]; });
    // what the page's receivers hold back for repairs now (jitterBufferTarget, ms)
    const sub = window.vrCall && window.vrCall.subscriber;
    const hold = sub ? Math.max(0, ...sub.getReceivers().map((r) => r.jitterBufferTarget || 0)) : 0;
    const level = (window.vrCall && window.vrCall.network && window.vrCall.network.level) || "";
    return { seconds: (now - w.at) / 1000, maxGap: Math.max(w.maxGap, now - since) / 1000,
             heights: w.heights, limits, out, hold, level, ...delta };
  };
  R.firstFrameAfter = (t) => { const at = R.frameTicks.find((x) => x > t); return at ?? null; };
  R.lastFrameBefore = (t) => {
    const before = R.frameTicks.filter((x) => x <= t);
    return before.length ? before[before.length - 1] : null;
  };
  window.__vrRecv = R;
  setInterval(tick, 100);
}"""


@dataclass(frozen=True)
class Received:
    """What one page received during a window."""

    seconds: float
    fps: float  # video frames decoded per second
    max_freeze_s: float  # the longest time without a new decoded frame (100 ms resolution)
    audio_concealed_pct: float  # concealedSamples / totalSamplesReceived
    frame_height: int  # median height of the frames decoded
    kbps: float  # video bytes received
    packets_lost: int  # audio and video, as the receiver counts them
    packets_received: int
    freeze_count: int  # Chromium's own freeze detection (freezeCount)
    freezes_s: float  # totalFreezesDuration
    # share of the window the sending browser's encoder held back its picture because of its
    # CPU or its bandwidth estimate (outbound-rtp qualityLimitationDurations of the other page)
    sender_cpu_limited_pct: float = 0.0
    sender_bandwidth_limited_pct: float = 0.0
    # where frames that were not decoded went: complete frames received, frames the receiver
    # dropped, and the NACKs and keyframe requests (PLI) it sent (inbound-rtp, video)
    frames_received: int = 0
    frames_dropped: int = 0
    nacks_sent: int = 0
    plis_sent: int = 0
    retransmitted_received: int = 0  # video packets repaired by a retransmission (RTX)
    # the media the page's receivers kept in hand at the window's end (jitterBufferTarget)
    playout_hold_ms: float = 0.0
    network_level: str = ""  # the page's own network hint then: good, fair or poor
    # the frames the sending page's camera encoder produced and sent in the same window
    sender_frames_encoded: int = 0
    sender_frames_sent: int = 0

    def figures(self) -> dict[str, float | int | str]:
        """The benchmark's fields, rounded."""
        return {k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(self).items()}


def start_window(page: Any) -> None:
    page.evaluate("() => window.__vrRecv.start()")


def read_window(page: Any, sender: Any = None) -> Received:
    """What ``page`` received since :func:`start_window`; with ``sender`` (the page whose
    camera it receives), why that page's encoder held back."""
    r = page.evaluate("() => window.__vrRecv.read()")
    seconds = max(float(r["seconds"]), 1e-3)
    sent = sender.evaluate("() => window.__vrRecv.read()") if sender else {}
    limits, out = sent.get("limits", {}), sent.get("out", {})
    heights = [int(h) for h in r["heights"] if h]
    return Received(
        seconds=seconds,
        fps=r["frames"] / seconds,
        max_freeze_s=float(r["maxGap"]),
        audio_concealed_pct=100 * r["concealed"] / r["samples"] if r["samples"] else 100.0,
        frame_height=int(statistics.median(heights)) if heights else 0,
        kbps=r["videoBytes"] * 8 / seconds / 1000,
        packets_lost=int(r["lost"]),
        packets_received=int(r["received"]),
        freeze_count=int(r["freezes"]),
        freezes_s=float(r["freezeS"]),
        sender_cpu_limited_pct=min(100.0, 100 * limits.get("cpu", 0) / seconds),
        sender_bandwidth_limited_pct=min(100.0, 100 * limits.get("bandwidth", 0) / seconds),
        frames_received=int(r["framesReceived"]),
        frames_dropped=int(r["framesDropped"]),
        nacks_sent=int(r["nacks"]),
        plis_sent=int(r["plis"]),
        retransmitted_received=int(r.get("rtx", 0)),
        playout_hold_ms=float(r.get("hold", 0)),
        network_level=str(r.get("level", "")),
        sender_frames_encoded=int(out.get("encoded", 0)),
        sender_frames_sent=int(out.get("sent", 0)),
    )


def first_frame_after(page: Any, wall_time: float) -> float | None:
    """Seconds from ``wall_time`` (``time.time()``) to the first video frame this page
    decoded after it; None: none yet."""
    at = page.evaluate("(t) => window.__vrRecv.firstFrameAfter(t)", wall_time * 1000)
    return None if at is None else at / 1000 - wall_time


def last_frame_before(page: Any, wall_time: float) -> float | None:
    """Wall-clock time of the last video frame this page decoded up to ``wall_time``."""
    at = page.evaluate("(t) => window.__vrRecv.lastFrameBefore(t)", wall_time * 1000)
    return None if at is None else at / 1000


@dataclass(frozen=True)
class Recovery:
    """One side through an outage."""

    frozen_s: float  # from the last frame before the network returned to the first after
    recovery_s: float  # from the network's return to the first frame decoded again


@dataclass
class NetworkVisit:
    """A visit in progress: the judge on the host, the petitioner behind ``link``."""

    link: ImpairedLink
    server: LiveServer
    judge: Any  # page; what it receives is "to_judge"
    petitioner: Any  # page inside the namespace; "to_petitioner"

    def pages(self) -> dict[str, Any]:
        return {"to_judge": self.judge, "to_petitioner": self.petitioner}

    def senders(self) -> dict[str, Any]:
        """The page whose camera each side receives."""
        return {"to_judge": self.petitioner, "to_petitioner": self.judge}

    def read(self) -> dict[str, Received]:
        """Each side's current window, with its sender's limitation."""
        senders = self.senders()
        return {name: read_window(page, senders[name]) for name, page in self.pages().items()}

    def measure(self, seconds: float) -> dict[str, Received]:
        """What each side receives over the next ``seconds``."""
        for page in self.pages().values():
            start_window(page)
        wait_until(
            lambda: all(read_window(p).seconds >= seconds for p in self.pages().values()),
            timeout=seconds + 30,
            interval=0.2,
            what=f"a {seconds} s measuring window",
        )
        return self.read()

    def wait_for_picture(self, heights: dict[str, int], timeout: float = 90) -> bool:
        """Until each side receives at least its height in ``heights`` over a 2 s window;
        False when that did not come within ``timeout``."""

        def back() -> bool:
            for page in self.pages().values():
                start_window(page)
            wait_until(
                lambda: all(read_window(p).seconds >= 2 for p in self.pages().values()),
                timeout=30,
                interval=0.2,
                what="a 2 s window",
            )
            return all(
                read_window(page).frame_height >= heights.get(name, 0)
                for name, page in self.pages().items()
            )

        try:
            wait_until(back, timeout=timeout, interval=0.5, what="the clean picture")
        except AssertionError:
            return False
        return True

    def wait_for_video(self, frames: int = 30, timeout: float = 60) -> None:
        """Until each side decodes ``frames`` new video frames."""
        for page in self.pages().values():
            start_window(page)

        def flowing() -> bool:
            return all(
                read_window(p).fps * read_window(p).seconds >= frames for p in self.pages().values()
            )

        wait_until(flowing, timeout=timeout, interval=0.2, what=f"{frames} frames each way")

    def outage(self, seconds: float, timeout: float = 60) -> dict[str, Recovery]:
        """A total outage of ``seconds`` both ways, and how each side came through it (a side
        still frozen after ``timeout`` counts as recovering after ``timeout``)."""
        self.link.outage(seconds)
        ended = wait_until(
            self.link.outage_ended_at, timeout=seconds + 30, interval=0.1, what="outage end"
        )
        recovery: dict[str, float] = {}

        def back() -> bool:
            for name, page in self.pages().items():
                if name not in recovery:
                    after = first_frame_after(page, ended)
                    if after is not None:
                        recovery[name] = after
            return len(recovery) == len(self.pages())

        try:
            wait_until(back, timeout=timeout, interval=0.1, what="video back after the outage")
        except AssertionError:
            for name in self.pages():
                recovery.setdefault(name, float(timeout))
        result: dict[str, Recovery] = {}
        for name, page in self.pages().items():
            before = last_frame_before(page, ended)
            frozen = ended + recovery[name] - (before if before is not None else ended - seconds)
            result[name] = Recovery(frozen_s=frozen, recovery_s=recovery[name])
        return result


def _insecure_origin_flag(server: LiveServer) -> str:
    return f"--unsafely-treat-insecure-origin-as-secure={server.url}"


@contextmanager
def network_visit(workdir: Path | None = None, seed: int | None = None) -> Iterator[NetworkVisit]:
    """The whole bed: impaired namespace, server, both browsers, the visit in progress."""
    with (
        tempfile.TemporaryDirectory(prefix="vr-netbed-", dir=workdir) as tmp,
        impaired_namespace("vn", seed=seed) as link,
    ):
        folder = Path(tmp)
        ns = link.namespace
        camera = write_counter_y4m(folder / "camera.y4m")
        server = start_live_server(
            folder / "var",
            {"VRECEPTION_MEDIA_ANNOUNCED_ADDRESSES": f'["{ns.host_address}"]'},
            host=ns.host_address,
        )
        try:
            args = (f"--use-file-for-fake-video-capture={camera}", _insecure_origin_flag(server))
            home = folder / "terminal-home"
            home.mkdir()
            wrapper = ns.wrapper(folder / "chromium-in-room", CHROMIUM, {"HOME": str(home)})
            with sync_playwright() as pw:
                terminal = launch_chromium(pw, *args, executable=wrapper)
                court = launch_chromium(pw, *args)
                try:
                    yield _hold_visit(link, server, court, terminal)
                finally:
                    terminal.close()
                    court.close()
        finally:
            stop_live_server(server)


def _hold_visit(link: ImpairedLink, server: LiveServer, court: Any, terminal: Any) -> NetworkVisit:
    visit_id, code = beside_playwright(checked_in_visit(server, server.passwords))
    judge_ctx = court.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    judge = judge_ctx.new_page()
    staff_in_call(judge, server.url, "judge", server.passwords["judge"], visit_id)
    room_ctx = terminal.new_context(locale="zh-CN", viewport={"width": 414, "height": 860})
    guest = room_ctx.new_page()
    guest.goto(server.url + f"/join?visit={visit_id}")
    assert guest.evaluate("window.isSecureContext") is True
    guest.fill("#code-input", code)
    guest.click("#code-submit")
    expect(guest.locator("#lobby-step")).to_be_visible(timeout=30_000)
    admit = judge.locator("#lobby-rows button", has_text="准许进入")
    expect(admit).to_be_visible(timeout=30_000)
    admit.click()
    expect(guest.locator("#call-step")).to_be_visible(timeout=30_000)
    visit = NetworkVisit(link=link, server=server, judge=judge, petitioner=guest)
    for page in visit.pages().values():
        page.evaluate(SAMPLER)
    visit.wait_for_video()
    return visit
