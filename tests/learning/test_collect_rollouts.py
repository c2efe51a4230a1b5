"""manage.py collect_rollouts: real envs, real H.264 clips in storage, nothing written on bad input."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from feedback.models import EnvironmentSpec, PolicyVersion, Segment, Trajectory
from feedback.rendering import ClipEncodingError
from feedback.services import segment_bounds
from feedback.storage import load_npz
from learning.core.rollouts import collect_episode, make_env, policy_for

pytestmark = pytest.mark.django_db


def collect(*args: str, **options: Any) -> str:
    out = io.StringIO()
    call_command(
        "collect_rollouts", *args, stdout=out, stderr=io.StringIO(), verbosity=0, **options
    )
    return out.getvalue()


def media_files() -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def assert_real_mp4(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        data = handle.read()
    assert data[4:8] == b"ftyp", f"{name} is not an MP4 (no ftyp box)"
    assert len(data) > 1000
    return data


@pytest.mark.parametrize(
    ("env_id", "policy", "obs_dim", "action_shape", "fps"),
    [
        ("CartPole-v1", "random", 4, (), 50),
        ("Pendulum-v1", "scripted", 3, (1,), 30),
        ("MountainCarContinuous-v0", "scripted", 2, (1,), 30),
        pytest.param("HalfCheetah-v5", "scripted", 17, (6,), 20, marks=pytest.mark.slow),
        pytest.param("Hopper-v5", "random", 11, (3,), 125, marks=pytest.mark.slow),
    ],
)
def test_collects_stores_and_encodes_each_supported_env(
    env_id: str, policy: str, obs_dim: int, action_shape: tuple[int, ...], fps: int
) -> None:
    output = collect(
        "--env",
        env_id,
        "--policy",
        policy,
        "--episodes",
        "1",
        "--max-steps",
        "24",
        "--segment-length",
        "10",
        "--seed",
        "7",
        "--width",
        "64",
        "--height",
        "64",
    )

    trajectory = Trajectory.objects.select_related("env", "policy").get()
    assert f"{env_id} / {policy}: stored 1 episode(s)" in output
    assert trajectory.seed == 7 and trajectory.source == Trajectory.Source.ROLLOUT
    assert trajectory.policy.name == policy and trajectory.policy.kind == policy
    spec = trajectory.env
    assert spec.env_id == env_id and spec.render_fps == fps  # the env's metadata render_fps
    assert spec.observation_space["shape"] == [obs_dim]
    assert spec.action_space["shape"] == list(action_shape)

    # Arrays round-trip: what is stored is exactly a fresh rollout with the same seed.
    env = make_env(env_id, render=False)
    try:
        expected = collect_episode(env, policy_for(policy, env), seed=7, max_steps=24, render=False)
    finally:
        env.close()
    stored = load_npz(trajectory.arrays.name)
    assert trajectory.length == expected.length and trajectory.has_rewards
    for name in ("observations", "actions", "rewards", "terminations"):
        np.testing.assert_array_equal(stored[name], getattr(expected, name), err_msg=name)
    assert trajectory.true_return == pytest.approx(expected.true_return)

    segments = list(trajectory.segments.order_by("start"))
    assert [(s.start, s.end) for s in segments] == segment_bounds(
        length=expected.length, segment_length=10
    )
    assert segments, "a 24-step (or early-ending) episode yields at least one segment"
    for segment in segments:
        assert segment.clip_status == Segment.ClipStatus.READY and segment.fps == fps
        assert segment.true_return == pytest.approx(
            expected.rewards[segment.start : segment.end].sum()
        )
        assert_real_mp4(segment.clip.name)
    assert not trajectory.pending_frames  # rendered synchronously, nothing parked


@pytest.mark.slow
def test_mujoco_clips_show_the_scene_not_a_black_frame() -> None:
    collect(
        env="HalfCheetah-v5", policy="random", episodes=1, max_steps=10, segment_length=10, seed=0
    )
    segment = Segment.objects.get()
    reader = imageio_ffmpeg.read_frames(default_storage.path(segment.clip.name))
    meta = next(reader)  # then raw RGB24 frames as bytes
    assert tuple(meta["size"]) == (256, 256)  # 256² is a multiple of 16: no padding
    frames = np.stack([np.frombuffer(raw, np.uint8).reshape(256, 256, 3) for raw in reader])
    assert frames.shape[0] == 10
    assert frames.mean() > 40 and frames.std() > 20


def test_episode_i_uses_seed_s_plus_i_and_fps_can_be_overridden() -> None:
    collect(
        env="CartPole-v1",
        policy="scripted",
        episodes=3,
        max_steps=12,
        segment_length=6,
        seed=40,
        fps=12,
    )
    assert list(Trajectory.objects.order_by("seed").values_list("seed", flat=True)) == [40, 41, 42]
    assert set(Segment.objects.values_list("fps", "clip_status")) == {(12, "ready")}
    assert Segment.objects.count() == 6
    assert PolicyVersion.objects.get().config == {"controller": "cartpole-pd"}


def test_skip_existing_collects_only_new_seeds() -> None:
    collect(
        env="CartPole-v1",
        policy="random",
        episodes=2,
        segment_length=10,
        seed=0,
        skip_existing=True,
    )
    output = collect(
        env="CartPole-v1",
        policy="random",
        episodes=3,
        segment_length=10,
        seed=0,
        skip_existing=True,
    )
    assert "stored 1 episode(s)" in output and "2 seeds already collected" in output
    assert list(Trajectory.objects.order_by("seed").values_list("seed", flat=True)) == [0, 1, 2]


@pytest.fixture(scope="module")
def cartpole_ppo_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stable_baselines3 import PPO

    path = tmp_path_factory.mktemp("checkpoints") / "ppo-cartpole-v3.zip"
    PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, seed=0, device="cpu").save(path)
    return path


def test_sb3_checkpoint_becomes_a_checkpoint_policy_named_after_the_file(
    cartpole_ppo_zip: Path,
) -> None:
    collect(
        env="CartPole-v1",
        policy=str(cartpole_ppo_zip),
        algo="ppo",
        episodes=1,
        max_steps=20,
        segment_length=10,
        seed=0,
    )
    policy = PolicyVersion.objects.get()
    assert policy.name == "ppo-cartpole-v3" and policy.kind == PolicyVersion.Kind.CHECKPOINT
    assert policy.config["algo"] == "ppo" and len(policy.config["checkpoint_sha256"]) == 64
    assert Segment.objects.filter(clip_status="ready").exists()


def test_a_different_checkpoint_with_the_same_file_name_is_refused(
    cartpole_ppo_zip: Path, tmp_path: Path
) -> None:
    collect(
        env="CartPole-v1",
        policy=str(cartpole_ppo_zip),
        episodes=1,
        max_steps=5,
        segment_length=5,
        seed=0,
    )
    from stable_baselines3 import PPO

    retrained = tmp_path / cartpole_ppo_zip.name
    PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, seed=1, device="cpu").save(retrained)
    with pytest.raises(CommandError, match="different checkpoint file; rename"):
        collect(
            env="CartPole-v1",
            policy=str(retrained),
            episodes=1,
            max_steps=5,
            segment_length=5,
            seed=9,
        )
    assert Trajectory.objects.count() == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", "Nope-v0", "--policy", "random"], "Unknown Gymnasium environment 'Nope-v0'"),
        (["--env", "CartPole-v1", "--policy", "missing/model.zip"], "no such file"),
        (
            ["--env", "CartPole-v1", "--policy", "random", "--episodes", "0"],
            "--episodes must be a positive",
        ),
        (
            ["--env", "CartPole-v1", "--policy", "random", "--segment-length", "-5"],
            "--segment-length must be",
        ),
        (["--env", "CartPole-v1", "--policy", "random", "--max-steps", "0"], "--max-steps must be"),
        (["--env", "CartPole-v1", "--policy", "random", "--fps", "0"], "--fps must be"),
        (
            ["--env", "CartPole-v1", "--policy", "random", "--seed", "-1"],
            "--seed must be zero or positive",
        ),
        (["--env", "Acrobot-v1", "--policy", "scripted"], "No scripted controller for Acrobot-v1"),
        (
            ["--env", "Hopper-v5", "--policy", "random", "--width", "4096"],
            "--width must be between",
        ),
        (
            ["--env", "CartPole-v1", "--policy", "random", "--algo", "trpo"],
            "invalid choice: 'trpo'",
        ),
        (["--env", "CartPole-v1", "--policy", "random", "--episodes", "two"], "invalid int value"),
    ],
)
def test_bad_input_is_a_command_error_and_writes_nothing(argv: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        collect(*argv)
    assert not EnvironmentSpec.objects.exists() and not PolicyVersion.objects.exists()
    assert not Trajectory.objects.exists() and media_files() == []


def test_checkpoint_of_another_env_writes_nothing(cartpole_ppo_zip: Path) -> None:
    with pytest.raises(CommandError, match="belongs to another environment"):
        collect(env="Pendulum-v1", policy=str(cartpole_ppo_zip), episodes=1)
    assert not EnvironmentSpec.objects.exists() and media_files() == []


def test_a_failed_clip_removes_the_whole_episode(monkeypatch: pytest.MonkeyPatch) -> None:
    from feedback import services

    real_attach = services.segment_clip_attach
    calls = {"n": 0}

    def attach_then_fail(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ClipEncodingError("ffmpeg failed to encode the clip: disk full")
        return real_attach(**kwargs)

    monkeypatch.setattr(services, "segment_clip_attach", attach_then_fail)
    with pytest.raises(CommandError, match="disk full. The episode being stored was removed"):
        collect(
            env="CartPole-v1",
            policy="scripted",
            episodes=1,
            max_steps=30,
            segment_length=10,
            seed=0,
        )
    # The first clip and the arrays were written, then removed with the rows: no orphans.
    assert calls["n"] == 2
    assert not Trajectory.objects.exists() and not Segment.objects.exists()
    assert [p for p in media_files() if p.suffix in {".mp4", ".npz"}] == []
