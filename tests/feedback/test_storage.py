"""Trajectory arrays: what is accepted, what is refused and with which message, and storage."""

from __future__ import annotations

import io
import pickle
import zipfile
from typing import Any

import numpy as np
import pytest
from django.core.files.storage import default_storage

from feedback.storage import (
    TrajectoryArrays,
    TrajectoryFormatError,
    load_npz,
    read_npz,
    save_frames,
    save_trajectory_arrays,
)
from tests.feedback.conftest import trajectory_arrays

T = 12


def _arrays(**overrides: Any) -> dict[str, Any]:
    return {**trajectory_arrays(T, frames=True), **overrides}


def _npz(save: Any = np.savez_compressed, **arrays: Any) -> io.BytesIO:
    buffer = io.BytesIO()
    save(buffer, **arrays)
    buffer.seek(0)
    return buffer


def test_valid_arrays_report_length_and_true_return() -> None:
    arrays = TrajectoryArrays(**_arrays())
    assert arrays.length == T
    assert arrays.true_return == pytest.approx(float(_arrays()["rewards"].sum()))
    assert TrajectoryArrays(observations=np.zeros((3, 2)), actions=np.zeros(3, np.int64)).true_return is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"observations": [[0.0]] * T}, "'observations' must be a numpy array, got list."),
        ({"actions": np.array(["up"] * T)}, "'actions' has dtype <U2; allowed are float, int, uint and bool"),
        ({"actions": np.zeros(T, complex)}, "'actions' has dtype complex128"),
        ({"rewards": np.array(1.0)}, "'rewards' must have a time axis; got a scalar."),
        ({"observations": np.zeros((0, 3)), "actions": np.zeros((0, 1)), "rewards": None,
          "terminations": None, "frames": None},
         "'observations' is empty; a trajectory needs at least one step."),
        ({"actions": np.zeros((T + 1, 1))}, f"'actions' has {T + 1} steps but 'observations' has {T}"),
        ({"frames": np.zeros((T - 2, 32, 32, 3), np.uint8)}, f"'frames' has {T - 2} steps"),
        ({"rewards": np.r_[np.zeros(T - 1), np.nan]}, f"'rewards' contains NaN or infinity (first at step {T - 1})."),
        ({"observations": np.full((T, 3), -np.inf)}, "'observations' contains NaN or infinity (first at step 0)."),
        ({"rewards": np.zeros((T, 1))}, "'rewards' must have shape (T,), got (12, 1)."),
        ({"terminations": np.zeros((T, 2), bool)}, "'terminations' must have shape (T,), got (12, 2)."),
        ({"frames": np.zeros((T, 32, 32), np.uint8)}, "'frames' must have shape (T, H, W, 3), got (12, 32, 32)."),
        ({"frames": np.zeros((T, 32, 32, 4), np.uint8)}, "'frames' must have shape (T, H, W, 3)"),
        ({"frames": np.zeros((T, 32, 32, 3), np.float32)}, "'frames' must be uint8 RGB, got float32."),
        ({"frames": np.zeros((T, 8, 32, 3), np.uint8)}, "'frames' are 32x8; each side must be at least 16"),
        ({"frames": np.zeros((1, 1025, 1024, 3), np.uint8), "observations": np.zeros((1, 3)),
          "actions": np.zeros(1), "rewards": None, "terminations": None},
         "a frame at most 1048576 pixels"),
    ],
    ids=["list", "strings", "complex", "scalar", "empty", "length-mismatch", "frames-length", "nan",
         "inf", "rewards-2d", "terminations-2d", "frames-3d", "frames-rgba", "frames-float",
         "frames-too-small", "frames-too-large"],
)
def test_invalid_arrays_are_refused_with_a_message_naming_the_array(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(TrajectoryFormatError) as info:
        TrajectoryArrays(**_arrays(**overrides))
    assert message in str(info.value)


def test_integer_and_bool_arrays_are_accepted_without_a_finiteness_check() -> None:
    arrays = TrajectoryArrays(observations=np.arange(T * 2).reshape(T, 2), actions=np.ones(T, bool))
    assert arrays.length == T


def test_read_npz_round_trips_every_array_and_casts_terminations_to_bool() -> None:
    arrays = _arrays(terminations=np.r_[np.zeros(T - 1, np.int8), 1])
    loaded = read_npz(_npz(**arrays))
    for name in ("observations", "actions", "rewards", "frames"):
        np.testing.assert_array_equal(getattr(loaded, name), arrays[name])
    assert loaded.terminations.dtype == bool and loaded.terminations[-1] and not loaded.terminations[0]


def test_read_npz_accepts_only_observations_and_actions() -> None:
    loaded = read_npz(_npz(observations=np.zeros((4, 2)), actions=np.zeros(4)))
    assert loaded.rewards is None and loaded.terminations is None and loaded.frames is None


UNPICKLED: list[str] = []


def _record_unpickling() -> str:
    UNPICKLED.append("unpickled")
    return "boom"


class _Tripwire:
    """Unpickling an instance of this calls ``_record_unpickling``."""

    def __reduce__(self) -> Any:
        return (_record_unpickling, ())


def test_read_npz_refuses_a_pickled_object_array_without_unpickling_it() -> None:
    observations = np.empty(T, dtype=object)
    observations[:] = [_Tripwire() for _ in range(T)]
    archive = _npz(np.savez, **_arrays(observations=observations))
    UNPICKLED.clear()
    with pytest.raises(TrajectoryFormatError, match="pickled object array; only plain numeric arrays"):
        read_npz(archive)
    assert UNPICKLED == []


def test_read_npz_refuses_a_bare_pickle_without_unpickling_it() -> None:
    UNPICKLED.clear()
    with pytest.raises(TrajectoryFormatError, match="not a .npz archive"):
        read_npz(io.BytesIO(pickle.dumps({"observations": _Tripwire()})))
    assert UNPICKLED == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a .npz archive"),
        (b"just some text", "not a .npz archive"),
        (b"PK\x03\x04 but not really a zip", "not a readable .npz archive"),
    ],
    ids=["empty", "text", "zip-magic-only"],
)
def test_read_npz_names_files_that_are_not_archives(content: bytes, message: str) -> None:
    with pytest.raises(TrajectoryFormatError, match=message):
        read_npz(io.BytesIO(content))


def test_read_npz_tells_a_bare_npy_apart_from_an_npz() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((T, 3)))
    buffer.seek(0)
    with pytest.raises(TrajectoryFormatError, match="single .npy array; upload a .npz archive"):
        read_npz(buffer)


def test_read_npz_refuses_a_zip_whose_members_are_not_arrays() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("observations.npy", b"not an array")
        archive.writestr("actions.npy", b"not an array either")
    buffer.seek(0)
    with pytest.raises(TrajectoryFormatError, match="'observations' must be a numpy array, got bytes"):
        read_npz(buffer)


def test_read_npz_names_missing_and_unknown_arrays() -> None:
    with pytest.raises(TrajectoryFormatError, match="missing 'observations', 'actions'"):
        read_npz(_npz(rewards=np.zeros(3)))
    with pytest.raises(TrajectoryFormatError, match=r"unknown arrays \['info', 'obs'\]"):
        read_npz(_npz(observations=np.zeros((3, 1)), actions=np.zeros(3), obs=np.zeros(3), info=np.zeros(3)))


def test_saved_arrays_leave_frames_out_and_frames_are_parked_separately() -> None:
    arrays = TrajectoryArrays(**_arrays())
    arrays_name = save_trajectory_arrays(arrays, name="trajectories/t.npz")
    frames_name = save_frames(arrays.frames, name="frames/t.npz")
    stored = load_npz(arrays_name)
    assert sorted(stored) == ["actions", "observations", "rewards", "terminations"]
    np.testing.assert_array_equal(stored["observations"], arrays.observations)
    np.testing.assert_array_equal(load_npz(frames_name)["frames"], arrays.frames)
    assert default_storage.exists(arrays_name) and default_storage.exists(frames_name)


def test_read_npz_refuses_an_archive_that_unpacks_beyond_the_limit_before_decompressing() -> None:
    # 8 MB of zeros compresses to a few KB: the weight of the upload says nothing.
    archive = _npz(observations=np.zeros((1000, 1000), np.float64), actions=np.zeros((1000, 1)))
    assert len(archive.getvalue()) < 100_000
    with pytest.raises(TrajectoryFormatError, match=r"unpacks to \d+ bytes; the limit is 1000000 bytes"):
        read_npz(archive, max_unpacked_bytes=1_000_000)
    archive.seek(0)
    assert read_npz(archive, max_unpacked_bytes=10_000_000).length == 1000
