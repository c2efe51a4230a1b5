"""learning.core.rollouts / scripted: real envs, real frames, no Django."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from learning.core import rollouts
from learning.core.rollouts import (
    CheckpointError,
    EnvironmentUnavailable,
    NoScriptedPolicy,
    RandomPolicy,
    Rollout,
    collect_episode,
    configure_mujoco_gl,
    describe_space,
    load_sb3_policy,
    make_env,
    policy_for,
    probe_mujoco_gl,
    scripted_policy,
)

REPO = Path(__file__).resolve().parents[2]


def episode_return(env_id: str, policy_name: str, *, seed: int, max_steps: int) -> float:
    env = make_env(env_id, render=False)
    try:
        return collect_episode(
            env, policy_for(policy_name, env), seed=seed, max_steps=max_steps, render=False
        ).true_return
    finally:
        env.close()


# ----------------------------------------------------------------------------- scripted policies


@pytest.mark.parametrize(
    ("env_id", "max_steps", "margin"),
    [
        ("CartPole-v1", 500, 300.0),  # scripted balances all 500 steps; random falls within ~40
        ("Pendulum-v1", 200, 400.0),  # ~-120 vs ~-1000
        ("MountainCarContinuous-v0", 999, 50.0),  # reaches the flag (+89) vs -33
        ("InvertedPendulum-v5", 300, 250.0),
        ("HalfCheetah-v5", 300, 200.0),  # ~+310 vs ~-80 over 300 steps
        ("Hopper-v5", 300, 200.0),  # stands (~300) vs falls (~15)
    ],
)
def test_scripted_policy_beats_random_on_true_return(
    env_id: str, max_steps: int, margin: float
) -> None:
    for seed in (0, 1):
        scripted = episode_return(env_id, "scripted", seed=seed, max_steps=max_steps)
        random = episode_return(env_id, "random", seed=seed, max_steps=max_steps)
        assert scripted > random + margin, (env_id, seed, scripted, random)


def test_cheetah_gait_runs_forward_not_backward() -> None:
    env = make_env("HalfCheetah-v5", render=False)
    try:
        collect_episode(env, scripted_policy(env), seed=0, max_steps=200, render=False)
        x_position = float(env.unwrapped.data.qpos[0])  # type: ignore[attr-defined]
    finally:
        env.close()
    assert x_position > 5.0  # metres in 10 s of simulated time


def test_no_scripted_policy_for_unknown_envs_names_the_supported_ones() -> None:
    env = make_env("Acrobot-v1", render=False)
    try:
        with pytest.raises(NoScriptedPolicy, match="CartPole.*HalfCheetah"):
            scripted_policy(env)
    finally:
        env.close()


# ----------------------------------------------------------------------------- rollouts


def test_rollout_arrays_have_documented_shapes_and_dtypes() -> None:
    env = make_env("CartPole-v1")
    try:
        rollout = collect_episode(env, RandomPolicy(env.action_space), seed=0, max_steps=500)
    finally:
        env.close()
    steps = rollout.length
    assert rollout.observations.shape == (steps, 4)
    assert rollout.actions.shape == (steps,) and rollout.actions.dtype == np.int64
    assert rollout.rewards.shape == (steps,) and rollout.terminations.dtype == bool
    # A random policy drops the pole: the last step, and only it, is terminal.
    assert steps < 100 and rollout.terminations[-1] and not rollout.terminations[:-1].any()
    assert not rollout.truncated
    # 600×400 pygame frames are box-downscaled by 2 for a 256-pixel target.
    assert rollout.frames is not None
    assert rollout.frames.shape == (steps, 200, 300, 3) and rollout.frames.dtype == np.uint8
    assert rollout.true_return == float(steps)


def test_continuous_actions_are_float32_rows_and_max_steps_truncates() -> None:
    env = make_env("Pendulum-v1")
    try:
        rollout = collect_episode(env, scripted_policy(env), seed=0, max_steps=7)
    finally:
        env.close()
    assert rollout.actions.shape == (7, 1) and rollout.actions.dtype == np.float32
    assert rollout.truncated and not rollout.terminations.any()
    assert rollout.frames is not None and rollout.frames.shape == (7, 250, 250, 3)


def test_mujoco_frames_honour_the_requested_size_and_show_the_robot() -> None:
    env = make_env("Hopper-v5", width=96, height=64)
    try:
        rollout = collect_episode(env, scripted_policy(env), seed=0, max_steps=12)
    finally:
        env.close()
    assert rollout.frames is not None
    assert rollout.frames.shape == (12, 64, 96, 3) and rollout.frames.dtype == np.uint8
    # Not a blank or single-colour buffer: the scene has sky, floor and the robot.
    assert rollout.frames.std() > 10
    assert os.environ["MUJOCO_GL"] in {"egl", "osmesa", "glx"}


def test_frame_t_shows_the_state_action_t_was_taken_in() -> None:
    env = make_env("HalfCheetah-v5", width=64, height=64)
    try:
        rollout = collect_episode(env, scripted_policy(env), seed=4, max_steps=5)
        observation, _ = env.reset(seed=4)
        first_frame = env.render()
    finally:
        env.close()
    np.testing.assert_array_equal(rollout.observations[0], observation)
    assert rollout.frames is not None
    np.testing.assert_array_equal(rollout.frames[0], first_frame)
    assert not np.array_equal(rollout.frames[0], rollout.frames[-1])  # it moved


def test_same_seed_same_rollout_other_seed_other_rollout() -> None:
    def run(env_id: str, policy: str, seed: int) -> Rollout:
        env = make_env(env_id, width=48, height=48)
        try:
            return collect_episode(env, policy_for(policy, env), seed=seed, max_steps=25)
        finally:
            env.close()

    for env_id, policy in (
        ("CartPole-v1", "random"),
        ("HalfCheetah-v5", "random"),
        ("Pendulum-v1", "scripted"),
    ):
        first, again, other = run(env_id, policy, 3), run(env_id, policy, 3), run(env_id, policy, 4)
        for name in ("observations", "actions", "rewards", "terminations", "frames"):
            np.testing.assert_array_equal(
                getattr(first, name), getattr(again, name), err_msg=f"{env_id} {name}"
            )
        assert not np.array_equal(
            first.observations[: other.length], other.observations[: first.length]
        )


def test_a_second_mujoco_env_still_renders_after_the_first_env_is_freed() -> None:
    """Regression: a dead env's MjrContext used to delete the *current* GL context's framebuffer.

    The garbage collector frees a closed env's ``MjrContext`` whenever it gets to it; if a newer
    env's GL context is current by then, that env renders black from then on. ``close()`` now
    frees it at once, under its own context, so a later free has nothing left to delete.
    """
    first = make_env("Hopper-v5", width=48, height=48)
    collect_episode(first, scripted_policy(first), seed=0, max_steps=2)
    old_mujoco_context = first.unwrapped.mujoco_renderer.viewer.con  # type: ignore[attr-defined]
    first.close()
    first.close()  # closing twice is harmless
    second = make_env("HalfCheetah-v5", width=48, height=48)
    try:
        collect_episode(second, scripted_policy(second), seed=0, max_steps=2)
        old_mujoco_context.free()  # what the garbage collector does, at a moment of its choosing
        rollout = collect_episode(second, scripted_policy(second), seed=0, max_steps=3)
    finally:
        second.close()
    assert rollout.frames is not None and rollout.frames.mean() > 20


def test_rollout_refuses_inconsistent_arrays() -> None:
    with pytest.raises(ValueError, match="actions has 2 steps"):
        Rollout(
            observations=np.zeros((3, 2)),
            actions=np.zeros((2,)),
            rewards=np.zeros(3),
            terminations=np.zeros(3, bool),
        )
    with pytest.raises(ValueError, match="uint8"):
        Rollout(
            observations=np.zeros((3, 2)),
            actions=np.zeros((3,)),
            rewards=np.zeros(3),
            terminations=np.zeros(3, bool),
            frames=np.zeros((3, 16, 16, 3), np.float32),
        )


# ----------------------------------------------------------------------------- envs and spaces


def test_unknown_env_id_is_a_clear_error() -> None:
    with pytest.raises(EnvironmentUnavailable, match="Unknown Gymnasium environment 'Nope-v0'"):
        make_env("Nope-v0")


def test_space_descriptions_are_json_with_bounds_or_n() -> None:
    env = make_env("HalfCheetah-v5", render=False)
    try:
        observation = describe_space(env.observation_space)
        action = describe_space(env.action_space)
    finally:
        env.close()
    assert observation == {
        "type": "Box",
        "shape": [17],
        "dtype": "float64",
        "low": None,
        "high": None,
    }
    assert action == {"type": "Box", "shape": [6], "dtype": "float32", "low": -1.0, "high": 1.0}
    discrete = describe_space(gym.spaces.Discrete(2))
    assert discrete["n"] == 2 and discrete["shape"] == []
    json.dumps([observation, action, discrete], allow_nan=False)  # strict JSON (PostgreSQL jsonb)


def test_mujoco_gl_user_choice_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    monkeypatch.setattr(rollouts, "probe_mujoco_gl", lambda backend: pytest.fail("probed"))
    assert configure_mujoco_gl() == "osmesa"


def test_mujoco_gl_falls_back_to_the_first_backend_that_renders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # setenv first so that the test's choice is undone even when MUJOCO_GL was unset: a later
    # env in this process must keep the backend PyOpenGL was already loaded for.
    monkeypatch.setenv("MUJOCO_GL", "placeholder")
    monkeypatch.delenv("MUJOCO_GL")
    assert probe_mujoco_gl("no-such-backend") is False
    # A real probe of OSMesa (Debian libosmesa6), run in a subprocess like the EGL one.
    assert configure_mujoco_gl(("no-such-backend", "osmesa")) == "osmesa"
    assert os.environ["MUJOCO_GL"] == "osmesa"  # exported for later envs and child processes


# ----------------------------------------------------------------------------- SB3 checkpoints


@pytest.fixture(scope="module")
def cartpole_ppo_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, seed=0, device="cpu")
    path = tmp_path_factory.mktemp("checkpoints") / "cartpole-ppo.zip"
    model.save(path)
    return path


def test_sb3_checkpoint_acts_deterministically(cartpole_ppo_zip: Path) -> None:
    env = make_env("CartPole-v1", render=False)
    try:
        policy = load_sb3_policy(cartpole_ppo_zip, algo="ppo", env=env)
        first = collect_episode(env, policy, seed=1, max_steps=30, render=False)
        again = collect_episode(env, policy, seed=1, max_steps=30, render=False)
    finally:
        env.close()
    assert policy.name == "cartpole-ppo"
    assert first.actions.dtype == np.int64 and set(np.unique(first.actions)) <= {0, 1}
    np.testing.assert_array_equal(first.actions, again.actions)


def test_sb3_checkpoint_errors_say_what_is_wrong(cartpole_ppo_zip: Path, tmp_path: Path) -> None:
    pendulum = make_env("Pendulum-v1", render=False)
    cartpole = make_env("CartPole-v1", render=False)
    not_a_zip = tmp_path / "notes.zip"
    not_a_zip.write_text("hello")
    try:
        with pytest.raises(CheckpointError, match="belongs to another environment"):
            load_sb3_policy(cartpole_ppo_zip, algo="ppo", env=pendulum)
        with pytest.raises(CheckpointError, match="does not exist"):
            load_sb3_policy(tmp_path / "missing.zip", algo="ppo", env=cartpole)
        with pytest.raises(CheckpointError, match="Could not load notes.zip"):
            load_sb3_policy(not_a_zip, algo="ppo", env=cartpole)
        with pytest.raises(CheckpointError, match="Unknown algorithm"):
            load_sb3_policy(cartpole_ppo_zip, algo="trpo", env=cartpole)
    finally:
        pendulum.close()
        cartpole.close()


# ----------------------------------------------------------------------------- purity


def test_learning_core_imports_neither_django_nor_feedback() -> None:
    """Every module under learning/core, imported in a fresh interpreter, leaves Django out."""
    script = (
        "import importlib, pkgutil, sys\n"
        "import learning.core as core\n"
        "names = [m.name for m in pkgutil.walk_packages(core.__path__, 'learning.core.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'feedback', 'rest_framework'))\n"
        "print(len(names), bad)\n"
        "sys.exit(1 if bad or 'learning.core.rollouts' not in names else 0)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_policy_protocol_is_satisfied_by_every_policy_kind(cartpole_ppo_zip: Path) -> None:
    env = make_env("CartPole-v1", render=False)
    try:
        policies: list[Any] = [
            policy_for("random", env),
            policy_for("scripted", env),
            policy_for(str(cartpole_ppo_zip), env),
        ]
    finally:
        env.close()
    assert all(isinstance(p, rollouts.Policy) for p in policies)
    assert [p.name for p in policies] == ["random", "cartpole-pd", "cartpole-ppo"]
