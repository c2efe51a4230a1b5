"""Trajectory arrays on disk: validation, `.npz` reading and writing through Django storage.

Everything that enters PrefLab as arrays passes through :class:`TrajectoryArrays`, whose
``__post_init__`` checks shapes, dtypes and finiteness, so a bad upload is refused with a
message that names the array and the problem before anything is written.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import IO

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

ALLOWED_KINDS = {"f", "i", "u", "b"}  # float, signed/unsigned int, bool; never object
REQUIRED_KEYS = ("observations", "actions")
OPTIONAL_KEYS = ("rewards", "terminations", "frames")
MAX_FRAME_PIXELS = 1024 * 1024


class TrajectoryFormatError(ValueError):
    """The arrays do not describe a valid trajectory; the message says what to fix."""


@dataclass(frozen=True)
class TrajectoryArrays:
    """One trajectory of T steps.

    observations: (T, *obs_shape) numeric
    actions:      (T, *act_shape) numeric
    rewards:      (T,) float, optional — true env rewards, research only
    terminations: (T,) bool, optional
    frames:       (T, H, W, 3) uint8, optional — RGB frames to render clips from
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray | None = None
    terminations: np.ndarray | None = None
    frames: np.ndarray | None = None

    def __post_init__(self) -> None:
        arrays = {
            "observations": self.observations,
            "actions": self.actions,
            "rewards": self.rewards,
            "terminations": self.terminations,
            "frames": self.frames,
        }
        for name, array in arrays.items():
            if array is None:
                continue
            if not isinstance(array, np.ndarray):
                raise TrajectoryFormatError(f"'{name}' must be a numpy array, got {type(array).__name__}.")
            if array.dtype.kind not in ALLOWED_KINDS:
                raise TrajectoryFormatError(
                    f"'{name}' has dtype {array.dtype}; allowed are float, int, uint and bool arrays."
                )
            if array.ndim == 0:
                raise TrajectoryFormatError(f"'{name}' must have a time axis; got a scalar.")
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                bad = int(np.argwhere(~np.isfinite(array))[0][0])
                raise TrajectoryFormatError(f"'{name}' contains NaN or infinity (first at step {bad}).")
        length = self.observations.shape[0]
        if length == 0:
            raise TrajectoryFormatError("'observations' is empty; a trajectory needs at least one step.")
        for name, array in arrays.items():
            if array is not None and array.shape[0] != length:
                raise TrajectoryFormatError(
                    f"'{name}' has {array.shape[0]} steps but 'observations' has {length}; "
                    "all arrays must share the first (time) axis."
                )
        if self.rewards is not None and self.rewards.ndim != 1:
            raise TrajectoryFormatError(f"'rewards' must have shape (T,), got {self.rewards.shape}.")
        if self.terminations is not None and self.terminations.ndim != 1:
            raise TrajectoryFormatError(
                f"'terminations' must have shape (T,), got {self.terminations.shape}."
            )
        if self.frames is not None:
            frames = self.frames
            if frames.ndim != 4 or frames.shape[-1] != 3:
                raise TrajectoryFormatError(f"'frames' must have shape (T, H, W, 3), got {frames.shape}.")
            if frames.dtype != np.uint8:
                raise TrajectoryFormatError(f"'frames' must be uint8 RGB, got {frames.dtype}.")
            if frames.shape[1] * frames.shape[2] > MAX_FRAME_PIXELS or min(frames.shape[1:3]) < 16:
                raise TrajectoryFormatError(
                    f"'frames' are {frames.shape[2]}x{frames.shape[1]}; each side must be at least 16 "
                    f"pixels and a frame at most {MAX_FRAME_PIXELS} pixels."
                )

    @property
    def length(self) -> int:
        return int(self.observations.shape[0])

    @property
    def true_return(self) -> float | None:
        return None if self.rewards is None else float(self.rewards.sum())


ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a .npz is a zip archive of .npy files
NPY_MAGIC = b"\x93NUMPY"


def _check_unpacked_size(fileobj: IO[bytes], limit: int) -> None:
    """Refuse archives that would unpack to more than ``limit`` bytes (zip bombs), reading
    only the zip directory — before numpy decompresses anything."""
    try:
        with zipfile.ZipFile(fileobj) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise TrajectoryFormatError(f"The file is not a readable .npz archive: {exc}") from None
    finally:
        fileobj.seek(0)
    if unpacked > limit:
        raise TrajectoryFormatError(
            f"The .npz unpacks to {unpacked} bytes; the limit is {limit} bytes "
            "(PREFLAB_MAX_UNPACKED_BYTES)."
        )


def read_npz(fileobj: IO[bytes], *, max_unpacked_bytes: int | None = None) -> TrajectoryArrays:
    """Parse an uploaded ``.npz``; pickled objects are refused, never loaded."""
    # np.load guesses the format from the first bytes: a bare .npy comes back as an array
    # (not an archive) and anything else is taken for a pickle. Name the real problem.
    head = fileobj.read(len(NPY_MAGIC))
    fileobj.seek(0)
    if head.startswith(NPY_MAGIC):
        raise TrajectoryFormatError(
            "The file is a single .npy array; upload a .npz archive (numpy.savez_compressed) "
            "holding 'observations' and 'actions'."
        )
    if not head.startswith(ZIP_MAGIC):
        raise TrajectoryFormatError(
            "The file is not a .npz archive (a zip of .npy arrays, as numpy.savez_compressed "
            "writes); pickles and other formats are refused."
        )
    if max_unpacked_bytes is not None:
        _check_unpacked_size(fileobj, max_unpacked_bytes)
    try:
        with np.load(fileobj, allow_pickle=False) as archive:
            keys = set(archive.files)
            missing = [key for key in REQUIRED_KEYS if key not in keys]
            if missing:
                raise TrajectoryFormatError(
                    f"The .npz is missing {', '.join(repr(k) for k in missing)}; "
                    f"it must hold 'observations' and 'actions' (optional: {', '.join(OPTIONAL_KEYS)})."
                )
            unknown = sorted(keys - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
            if unknown:
                raise TrajectoryFormatError(
                    f"The .npz holds unknown arrays {unknown}; allowed are "
                    f"{', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)}."
                )
            loaded = {key: archive[key] for key in keys}
    except TrajectoryFormatError:
        raise
    except ValueError as exc:
        # numpy raises ValueError("Object arrays cannot be loaded when allow_pickle=False").
        if "allow_pickle" in str(exc):
            raise TrajectoryFormatError(
                "The .npz contains a pickled object array; only plain numeric arrays are accepted."
            ) from None
        raise TrajectoryFormatError(f"The file is not a readable .npz archive: {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise TrajectoryFormatError(f"The file is not a readable .npz archive: {exc}") from None
    if "terminations" in loaded:
        loaded["terminations"] = loaded["terminations"].astype(bool)
    return TrajectoryArrays(**loaded)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def save_trajectory_arrays(arrays: TrajectoryArrays, *, name: str) -> str:
    """Write observations/actions/rewards/terminations (not frames) and return the stored name."""
    payload = {"observations": arrays.observations, "actions": arrays.actions}
    if arrays.rewards is not None:
        payload["rewards"] = arrays.rewards
    if arrays.terminations is not None:
        payload["terminations"] = arrays.terminations
    return default_storage.save(name, ContentFile(npz_bytes(payload)))


def save_frames(frames: np.ndarray, *, name: str) -> str:
    """Frames waiting for the background renderer; deleted once the clips exist."""
    return default_storage.save(name, ContentFile(npz_bytes({"frames": frames})))


def load_npz(name: str) -> dict[str, np.ndarray]:
    with default_storage.open(name, "rb") as handle:
        with np.load(handle, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
