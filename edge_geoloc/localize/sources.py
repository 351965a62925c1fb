"""Frame sources and the capture thread.

Sources (:func:`open_source` parses the ``--source`` string):

- :class:`VideoSource`: OpenCV ``VideoCapture``: a camera index (``0``), a video file, an RTSP/HTTP
  stream, or a GStreamer pipeline string (anything with ``!``, as used on a Jetson:
  ``nvarguscamerasrc ! ... ! appsink``). A live source that stops delivering is reopened
  ``retries`` times before it is reported lost; a file that ends is a clean end.
- :class:`ImageFolderSource`: images sorted by name; times from ``timestamps.csv`` (``name,seconds``)
  in the folder, else from file names that are numbers (seconds), else ``index / rate_hz``.
- :class:`ListSource`: frames already in memory; the simulation's synthetic source is
  :class:`edge_geoloc.sim.frames.SyntheticSource` (workstation wing).

A frame that cannot be decoded is delivered as a :class:`Frame` without an image and with the
reason: the loop counts it and goes on. :class:`Capture` runs a source in its own thread: in
``latest`` mode (live cameras) only the newest frame is kept, so a slow stage never works on a
stale frame and nothing queues up (overwritten frames are counted); in ``lockstep`` mode (files,
folders, rendering) the thread prepares the next frame while the loop works and waits for it to be
taken, so no frame is lost.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_geoloc.localize.tables import Column, number_column, read_table, text

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://", "rtmp://")


class SourceLost(RuntimeError):
    """A live source that stopped delivering frames and could not be reopened."""


@dataclass
class Frame:
    """One camera frame. ``image`` is RGB uint8 (H, W, 3), or None with ``error`` for a corrupt frame."""

    index: int  # sequence number in the source
    t: float  # seconds on the source's clock (file time, folder timestamps, trajectory time, live: since start)
    image: np.ndarray | None
    error: str | None = None
    truth: Any = None  # the true pose (synthetic sources only), for evaluation
    captured: float = 0.0  # time.monotonic() when the capture thread got it (staleness)


def as_rgb(image: Any, bgr: bool = True) -> tuple[np.ndarray | None, str | None]:
    """A decoded frame as RGB uint8 (H, W, 3), or (None, why) when it is not a usable image."""
    if image is None:
        return None, "no image data (decoder returned nothing)"
    if not isinstance(image, np.ndarray):
        return None, f"not an image array ({type(image).__name__})"
    if image.size == 0 or image.ndim not in (2, 3) or image.shape[0] < 2 or image.shape[1] < 2:
        return None, f"empty or malformed image of shape {image.shape}"
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        return None, f"unsupported pixel type {image.dtype} (expected 8-bit)"
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB), None
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB), None
    if image.shape[2] != 3:
        return None, f"{image.shape[2]} channels (expected 1, 3 or 4)"
    return (cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if bgr else image), None


class FrameSource:
    """A source of frames; :meth:`read` returns None once it has ended."""

    live: bool = False  # frames arrive on their own clock (a camera), not on demand
    name: str = "source"

    def read(self) -> Frame | None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source holds (nothing, by default)."""


class VideoSource(FrameSource):
    """OpenCV VideoCapture over a camera index, a file, a stream URL or a GStreamer pipeline."""

    def __init__(
        self,
        spec: str | int,
        retries: int = 5,
        retry_delay_s: float = 1.0,
        capture_factory: Callable[..., Any] | None = None,
        max_corrupt_run: int = 50,
    ) -> None:
        self.spec = spec
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self.max_corrupt_run = max_corrupt_run
        self._factory = capture_factory or cv2.VideoCapture
        text = str(spec).strip()
        self.kind = (
            "camera"
            if isinstance(spec, int) or text.isdigit()
            else "gstreamer"
            if "!" in text
            else "stream"
            if text.lower().startswith(STREAM_PREFIXES)
            else "file"
        )
        if self.kind == "file" and not Path(text).is_file():
            raise FileNotFoundError(
                f"video source {text}: no such file (a camera index, a stream URL, a GStreamer pipeline or a video file)"
            )
        self.live = self.kind != "file"
        self.name = f"{self.kind} {text}"
        self._args: tuple[Any, ...] = (
            (int(text),)
            if self.kind == "camera"
            else (text, cv2.CAP_GSTREAMER)
            if self.kind == "gstreamer"
            else (text,)
        )
        self.reopened = 0
        self._index = 0
        self._t0 = time.monotonic()
        self._fps = 0.0
        self._cap = self._open()

    def _open(self) -> Any:
        cap = self._factory(*self._args)
        if not cap.isOpened():
            cap.release()
            raise SourceLost(
                f"{self.name}: cannot be opened"
                + (" (OpenCV built without GStreamer?)" if self.kind == "gstreamer" else "")
            )
        fps = cap.get(cv2.CAP_PROP_FPS)
        self._fps = float(fps) if fps and math.isfinite(fps) and 0 < fps < 1000 else 0.0
        return cap

    def _time(self, cap: Any) -> float:
        if self.live:
            return time.monotonic() - self._t0
        ms = cap.get(cv2.CAP_PROP_POS_MSEC)
        if ms and math.isfinite(ms) and ms > 0:
            return float(ms) / 1000.0
        return self._index / self._fps if self._fps else float(self._index)

    def read(self) -> Frame | None:
        corrupt_run = 0
        while True:
            ok, image = self._cap.read()
            if ok:
                rgb, why = as_rgb(image)
                frame = Frame(self._index, self._time(self._cap), rgb, why)
                self._index += 1
                if rgb is None:
                    corrupt_run += 1
                    if corrupt_run < self.max_corrupt_run:
                        return frame
                    raise SourceLost(f"{self.name}: {corrupt_run} corrupt frames in a row ({why})")
                return frame
            if not self.live:
                return None  # a file that ends: a clean stop
            self._reopen()

    def _reopen(self) -> None:
        """A live source failed to deliver: reopen it up to ``retries`` times, then give up."""
        self._cap.release()
        last = "it stopped delivering frames"
        for attempt in range(1, self.retries + 1):
            log.warning("%s: no frame, reopening (attempt %d of %d)", self.name, attempt, self.retries)
            time.sleep(self.retry_delay_s)
            try:
                cap = self._open()
            except SourceLost as err:
                last = str(err)
                continue
            ok, image = cap.read()
            if ok:
                self.reopened += 1
                self._cap = _Primed(cap, image)
                return
            cap.release()
            last = "reopened but delivers no frames"
        raise SourceLost(f"{self.name}: lost after {self.retries} attempts to reopen ({last})")

    def close(self) -> None:
        self._cap.release()


class _Primed:
    """A reopened capture whose first frame was read to prove it works: hands that frame out first."""

    def __init__(self, cap: Any, first: np.ndarray) -> None:
        self.cap, self.first = cap, first

    def read(self) -> tuple[bool, Any]:
        if self.first is not None:
            image, self.first = self.first, None
            return True, image
        return self.cap.read()

    def get(self, prop: int) -> float:
        return self.cap.get(prop)

    def release(self) -> None:
        self.cap.release()


def read_timestamps(folder: Path, names: list[str]) -> list[float] | None:
    """Times of a folder's images from ``timestamps.csv`` (``name,seconds``; a header line is allowed)."""
    path = folder / "timestamps.csv"
    if not path.exists():
        return None
    columns = (Column("name", text, "an image file name"), number_column("seconds"))
    table = dict(read_table(path, columns, "timestamps"))
    missing = [name for name in names if name not in table]
    if missing:
        raise ValueError(f"{path}: no time for {len(missing)} image(s), e.g. {missing[0]}")
    return [table[name] for name in names]


class ImageFolderSource(FrameSource):
    """Images of a folder in name order, with times (see the module docstring)."""

    def __init__(self, folder: str | Path, rate_hz: float = 10.0) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"image folder {self.folder}: no such folder")
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(f"image folder {self.folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
        names = [p.name for p in self.files]
        times = read_timestamps(self.folder, names)
        if times is None:
            try:
                times = [float(p.stem) for p in self.files]
            except ValueError:
                if not rate_hz > 0:
                    raise ValueError(f"rate_hz must be positive, got {rate_hz}") from None
                times = [i / rate_hz for i in range(len(self.files))]
        if any(b <= a for a, b in itertools.pairwise(times)):
            raise ValueError(f"image folder {self.folder}: times must increase in name order")
        self.times = times
        self.name = f"folder {self.folder}"
        self._i = 0

    def read(self) -> Frame | None:
        if self._i >= len(self.files):
            return None
        i, path = self._i, self.files[self._i]
        self._i += 1
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        rgb, why = as_rgb(raw)
        return Frame(i, self.times[i], rgb, None if rgb is not None else f"{path.name}: cannot decode ({why})")


class ListSource(FrameSource):
    """Frames already in memory (pre-rendered for latency benchmarks, replays)."""

    def __init__(self, frames: list[Frame], name: str = "frames") -> None:
        self.frames = frames
        self.name = name
        self._i = 0

    def read(self) -> Frame | None:
        if self._i >= len(self.frames):
            return None
        f = self.frames[self._i]
        self._i += 1
        return Frame(f.index, f.t, f.image, f.error, f.truth)


def open_source(spec: str, rate_hz: float = 10.0, **video: Any) -> FrameSource:
    """A source from a ``--source`` string: camera index, video file, stream URL, GStreamer pipeline or image folder."""
    text = str(spec).strip()
    if not text:
        raise ValueError(
            "empty --source (expected a camera index, a video file, a stream URL, a GStreamer pipeline or an image folder)"
        )
    if Path(text).is_dir():
        return ImageFolderSource(text, rate_hz=rate_hz)
    return VideoSource(text, **video)


# --- the capture thread ---------------------------------------------------------------------------


class Capture:
    """Runs a source in its own thread and hands frames to the loop (see the module docstring).

    ``mode``: ``latest`` (default for live sources) keeps only the newest frame; ``lockstep``
    (default otherwise) delivers every frame. ``realtime`` paces a recorded source by its own
    times (a video replayed as if live; use with ``latest`` to see what a live run would drop).
    """

    def __init__(self, source: FrameSource, mode: str | None = None, realtime: bool = False) -> None:
        mode = mode or ("latest" if source.live else "lockstep")
        if mode not in ("latest", "lockstep"):
            raise ValueError(f"capture mode must be latest or lockstep, got {mode!r}")
        self.source, self.mode, self.realtime = source, mode, realtime
        self.dropped = 0  # frames overwritten before the loop took them (latest mode)
        self.delivered = 0
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._ended = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture {source.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        start_wall, start_t = time.monotonic(), None
        try:
            while not self._stop.is_set():
                frame = self.source.read()
                if frame is None:
                    break
                if self.realtime and not self.source.live:
                    start_t = frame.t if start_t is None else start_t
                    delay = (frame.t - start_t) - (time.monotonic() - start_wall)
                    if delay > 0 and self._stop.wait(delay):
                        break
                frame.captured = time.monotonic()
                with self._cond:
                    if self.mode == "lockstep":
                        while self._slot is not None and not self._stop.is_set():
                            self._cond.wait(0.1)
                    elif self._slot is not None:
                        self.dropped += 1
                    self._slot = frame
                    self._cond.notify_all()
        except BaseException as err:  # reported to the loop, which decides what to do
            self.error = err
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Frame | None:
        """The next frame (the newest in latest mode); None when the source has ended.

        Raises what the source raised (e.g. :class:`SourceLost`) once the frames before it were taken,
        and TimeoutError when nothing came within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._slot is None and not self._ended:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"{self.source.name}: no frame within {timeout:g} s")
                self._cond.wait(0.2 if left is None else min(left, 0.2))
            if self._slot is not None:
                frame, self._slot = self._slot, None
                self.delivered += 1
                if self.mode == "lockstep":  # a frame that waited for the loop by design is not stale
                    frame.captured = time.monotonic()
                self._cond.notify_all()
                return frame
        if self.error is not None:
            raise self.error
        return None

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=5.0)
        try:
            self.source.close()
        except Exception as err:  # closing a broken camera must not hide the summary
            log.warning("%s: close failed: %s", self.source.name, err)
