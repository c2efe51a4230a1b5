"""Encoding RGB frames into browser-playable H.264 MP4 clips."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import imageio.v2 as imageio
import numpy as np


class ClipEncodingError(RuntimeError):
    """ffmpeg could not encode the frames."""


def _even_pad(frames: np.ndarray) -> np.ndarray:
    """Pad (T, H, W, 3) to multiples of 16 so yuv420p/libx264 accept it without rescaling."""
    _, height, width, _ = frames.shape
    pad_h, pad_w = (-height) % 16, (-width) % 16
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def encode_mp4(frames: np.ndarray, *, fps: int) -> Path:
    """Encode (T, H, W, 3) uint8 frames into a temporary ``.mp4`` and return its path.

    The caller moves the file into storage and deletes it. ``+faststart`` puts the index
    first so playback starts before the whole file arrives.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ClipEncodingError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    handle, name = tempfile.mkstemp(suffix=".mp4", prefix="preflab-clip-")
    os.close(handle)
    path = Path(name)
    try:
        writer = imageio.get_writer(
            str(path),
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=16,
            ffmpeg_log_level="error",
            output_params=["-movflags", "+faststart", "-preset", "veryfast", "-crf", "23"],
        )
        with writer:
            for frame in _even_pad(frames):
                writer.append_data(frame)
    except Exception as exc:  # ffmpeg reports failures as assorted exception types
        path.unlink(missing_ok=True)
        raise ClipEncodingError(f"ffmpeg failed to encode the clip: {exc}") from exc
    return path
