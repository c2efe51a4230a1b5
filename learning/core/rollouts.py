"""Running policies in Gymnasium environments and recording what happened, frames included.

Pure library code: numpy, gymnasium and (lazily) stable-baselines3; no Django. The Django side
(``learning.rollout_import``) turns a :class:`Rollout` into stored trajectories and clips.

Rendering notes, measured on a 2-core CPU-only Debian 12 machine (Mesa 22.3 llvmpipe):

- MuJoCo needs its OpenGL backend chosen through ``MUJOCO_GL`` *before* ``mujoco`` is imported.
  :func:`configure_mujoco_gl` keeps a value the user set, otherwise probes ``egl`` then
  ``osmesa`` in a subprocess (a failed backend cannot be swapped out inside one process) and
  exports the first that renders. Mesa's EGL works without a GPU (software device, llvmpipe).
- With shadows and reflections on, software GL renders HalfCheetah at ~20 fps at 256×256;
  with both off, 150–290 fps. :func:`make_env` switches them off.
- An offscreen MuJoCo ``MjrContext`` frees its GL objects against whichever context is current
  when it is garbage-collected. If that happens after a newer env's context was made current,
  it deletes the *new* env's framebuffer and every later frame is black. :func:`make_env`'s
  wrapper therefore frees the MuJoCo context explicitly in ``close()`` while its own GL
  context is current, and makes that context current before each frame.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from learning.core.scripted import NoScriptedPolicy, scripted_policy

__all__ = [
    "SB3_ALGORITHMS",
    "CheckpointError",
    "EnvironmentUnavailable",
    "NoScriptedPolicy",
    "Policy",
    "RandomPolicy",
    "RenderingUnavailable",
    "Rollout",
    "SB3Policy",
    "collect_episode",
    "configure_mujoco_gl",
    "describe_space",
    "is_mujoco_env_id",
    "load_sb3_policy",
    "make_env",
    "policy_for",
    "probe_mujoco_gl",
    "scripted_policy",
]

MUJOCO_GL_CANDIDATES = ("egl", "osmesa")
SB3_ALGORITHMS = ("ppo", "sac", "a2c", "dqn", "td3")

# A one-sphere scene rendered through mujoco's own GL context: exactly what MuJoCo envs need.
_GL_PROBE = """
import mujoco
model = mujoco.MjModel.from_xml_string(
    "<mujoco><worldbody><light pos='0 0 3'/><geom type='sphere' size='0.5'/></worldbody></mujoco>")
renderer = mujoco.Renderer(model, 16, 16)
try:
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    renderer.update_scene(data)
    pixels = renderer.render()
finally:
    renderer.close()
assert pixels.shape == (16, 16, 3) and pixels.max() > 0, "blank frame"
"""


class EnvironmentUnavailable(ValueError):
    """The environment id is unknown, cannot be built here, or cannot render RGB frames."""


class RenderingUnavailable(RuntimeError):
    """No OpenGL backend could render MuJoCo frames on this machine."""


class CheckpointError(ValueError):
    """A policy checkpoint is missing, unreadable, or does not fit the environment."""


# --------------------------------------------------------------------------- policies


@runtime_checkable
class Policy(Protocol):
    """Something that picks actions. ``reset`` is called once per episode, before ``act``.

    ``act`` takes one observation (``obs_shape``) and returns one action: an ``int`` for a
    ``Discrete`` action space, an ``(act_dim,)`` float array for a ``Box``.
    """

    name: str

    def reset(self, *, seed: int) -> None: ...

    def act(self, observation: np.ndarray) -> Any: ...


@dataclass
class RandomPolicy:
    """Uniform random actions from the env's own action space, reseeded per episode.

    Seeding the space (not a global RNG) makes an episode reproducible from its seed alone.
    """

    action_space: gym.Space[Any]
    name: str = "random"

    def reset(self, *, seed: int) -> None:
        self.action_space.seed(seed)

    def act(self, observation: np.ndarray) -> Any:
        del observation
        return self.action_space.sample()


@dataclass
class SB3Policy:
    """A loaded Stable-Baselines3 model, acting deterministically (its mode, not a sample)."""

    model: Any
    name: str
    algo: str

    def reset(self, *, seed: int) -> None:
        del seed  # deterministic predict needs no RNG

    def act(self, observation: np.ndarray) -> Any:
        action, _ = self.model.predict(observation, deterministic=True)
        # Discrete models return a 0-d array; the env wants a plain int.
        return int(action) if np.ndim(action) == 0 else np.asarray(action)


def load_sb3_policy(path: str | Path, *, algo: str, env: gym.Env[Any, Any]) -> SB3Policy:
    """Load a Stable-Baselines3 ``.zip`` on CPU and check it fits ``env``'s spaces.

    Raises :class:`CheckpointError` with what is wrong (missing file, unknown algorithm, not an
    SB3 archive of that algorithm, observation/action spaces that differ from the env's).
    """
    algo = algo.lower()
    if algo not in SB3_ALGORITHMS:
        raise CheckpointError(
            f"Unknown algorithm {algo!r}; choose one of {', '.join(SB3_ALGORITHMS)}."
        )
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist or is not a file.")
    import stable_baselines3  # slow import (~1 s): only when a checkpoint is actually used

    algo_class = getattr(stable_baselines3, algo.upper())
    try:
        model = algo_class.load(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - SB3 raises assorted types for a foreign or corrupt archive
        raise CheckpointError(
            f"Could not load {path.name} as a Stable-Baselines3 {algo.upper()} model "
            f"({type(exc).__name__}: {exc}). Is --algo right?"
        ) from None
    for what, ours, theirs in (
        ("observation", env.observation_space, model.observation_space),
        ("action", env.action_space, model.action_space),
    ):
        if (
            type(ours) is not type(theirs)
            or getattr(ours, "shape", None) != getattr(theirs, "shape", None)
            or (isinstance(ours, gym.spaces.Discrete) and ours.n != theirs.n)
        ):
            raise CheckpointError(
                f"{path.name} was trained with {what} space {theirs}, but {env.spec.id if env.spec else 'the env'} "
                f"has {ours}; it belongs to another environment."
            )
    return SB3Policy(model=model, name=path.stem, algo=algo)


# --------------------------------------------------------------------------- environments


def probe_mujoco_gl(backend: str, *, timeout_s: float = 60.0) -> bool:
    """Whether MuJoCo can render one frame with ``MUJOCO_GL=backend`` (checked in a subprocess)."""
    env = {**os.environ, "MUJOCO_GL": backend}
    env.pop("PYOPENGL_PLATFORM", None)  # let mujoco pick the platform matching the backend
    try:
        result = subprocess.run(
            [sys.executable, "-c", _GL_PROBE],
            env=env,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def configure_mujoco_gl(candidates: tuple[str, ...] = MUJOCO_GL_CANDIDATES) -> str:
    """Settle ``MUJOCO_GL`` for this process and return it.

    A value already in the environment is the user's choice and is kept untouched. Otherwise
    the first candidate that renders (EGL, then OSMesa) is exported, so that child processes
    and later calls skip the probe. Raises :class:`RenderingUnavailable` if none works.
    """
    chosen = os.environ.get("MUJOCO_GL")
    if chosen:
        return chosen
    for backend in candidates:
        if probe_mujoco_gl(backend):
            os.environ["MUJOCO_GL"] = backend
            return backend
    raise RenderingUnavailable(
        f"MuJoCo could not render with any of {', '.join(candidates)}. Install Mesa's EGL "
        "(Debian: libegl1 libegl-mesa0 libgl1-mesa-dri) or OSMesa (libosmesa6), or set MUJOCO_GL."
    )


def is_mujoco_env_id(env_id: str) -> bool:
    """Whether a registered env id is implemented on MuJoCo (judged by its entry point)."""
    entry_point = gym.spec(env_id).entry_point
    where = entry_point if isinstance(entry_point, str) else getattr(entry_point, "__module__", "")
    return "mujoco" in where.lower()


def _quiet_mujoco_log() -> None:
    """Stop MuJoCo writing ``MUJOCO_LOG.TXT`` into the working directory; console logs stay.

    Gymnasium's HalfCheetah/Hopper XML use a compiler attribute MuJoCo 4 deprecates, so every
    env construction would otherwise append a warning to a file wherever the command ran.
    """
    import mujoco

    config = mujoco.MjLogConfig.get()
    if config.logto_file:
        config.logto_file = False
        config.set()


def _disable_expensive_effects(scene: Any) -> None:
    import mujoco

    # Software GL spends most of each frame on the shadow and reflection passes.
    scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0


class _MujocoFrames(gym.Wrapper):  # type: ignore[type-arg]
    """Renders MuJoCo frames cheaply and releases the GL resources safely (see module notes)."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        import mujoco

        # Gymnasium 1.4 renders a free camera unless one is named, and HalfCheetah's free
        # camera does not follow the body: a running cheetah leaves the frame in ~100 steps.
        # The models' own "track" camera (mode trackcom) follows the centre of mass.
        renderer = env.unwrapped.mujoco_renderer  # type: ignore[attr-defined]
        track = mujoco.mj_name2id(env.unwrapped.model, mujoco.mjtObj.mjOBJ_CAMERA, "track")  # type: ignore[attr-defined]
        if renderer.camera_id == -1 and track != -1:
            renderer.camera_id = track
        self._mujoco_context_freed = False

    def render(self) -> Any:
        renderer: Any = self.env.unwrapped.mujoco_renderer  # type: ignore[attr-defined]
        if renderer.viewer is None:
            self.env.render()  # creates the viewer and its GL context; this frame had shadows
            viewer: Any = renderer.viewer
            _disable_expensive_effects(viewer.scn)
        else:
            renderer.viewer.make_context_current()
        return self.env.render()

    def close(self) -> None:
        renderer = getattr(self.env.unwrapped, "mujoco_renderer", None)
        viewer = getattr(renderer, "viewer", None)
        if viewer is not None and not self._mujoco_context_freed:
            viewer.make_context_current()
            viewer.con.free()
            self._mujoco_context_freed = True  # a second close must not touch the dead context
        super().close()


def _downscale_factor(height: int, width: int, target_height: int, target_width: int) -> int:
    return min(16, max(1, round(max(height / target_height, width / target_width))))


class _DownscaledFrames(gym.Wrapper):  # type: ignore[type-arg]
    """Box-averages classic-control frames by an integer factor (600×400 → 300×200 for 256²).

    The clips stay small and sharp without adding an image library: averaging k×k blocks
    anti-aliases, where striding would make thin poles flicker.
    """

    def __init__(self, env: gym.Env[Any, Any], *, width: int, height: int) -> None:
        super().__init__(env)
        self._target = (height, width)

    def render(self) -> Any:
        frame = self.env.render()
        if not isinstance(frame, np.ndarray) or frame.ndim != 3:
            return frame
        factor = _downscale_factor(frame.shape[0], frame.shape[1], *self._target)
        if factor == 1:
            return frame
        height, width = frame.shape[0] // factor, frame.shape[1] // factor
        # Sum the k² strided sub-images in uint16 (k ≤ 16 cannot overflow): several times
        # faster than a float mean over a (H, k, W, k, 3) reshape, which cost ~8 ms a frame.
        total = np.zeros((height, width, 3), dtype=np.uint16)
        for dy in range(factor):
            for dx in range(factor):
                total += frame[dy : height * factor : factor, dx : width * factor : factor]
        area = factor * factor
        return ((total + area // 2) // area).astype(np.uint8)  # rounded mean of each k×k block


def make_env(
    env_id: str, *, render: bool = True, width: int = 256, height: int = 256
) -> gym.Env[Any, Any]:
    """Build a Gymnasium env; with ``render``, ``env.render()`` returns ``(H, W, 3)`` uint8.

    MuJoCo envs render offscreen at ``width × height`` with shadows and reflections off;
    classic-control frames (pygame, 600×400 or 500×500) are box-downscaled by the integer
    factor closest to fitting ``width × height`` (CartPole: 300×200). The caller must
    ``close()`` the env. Raises :class:`EnvironmentUnavailable` for unknown ids or envs that
    cannot produce RGB frames, :class:`RenderingUnavailable` when no GL backend works.
    """
    if width < 16 or height < 16:
        raise EnvironmentUnavailable(
            f"Render size {width}x{height} is too small; use at least 16x16."
        )
    try:
        mujoco_env = is_mujoco_env_id(env_id)
    except gym.error.Error as exc:
        raise EnvironmentUnavailable(f"Unknown Gymnasium environment {env_id!r}: {exc}") from None
    kwargs: dict[str, Any] = {}
    if render:
        kwargs["render_mode"] = "rgb_array"
        if mujoco_env:
            configure_mujoco_gl()
            kwargs.update(width=width, height=height)
        else:
            # Classic control draws on an offscreen pygame Surface; without these, pygame prints
            # a banner and SDL looks for a display (an XDG_RUNTIME_DIR error on servers).
            os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    if mujoco_env:
        _quiet_mujoco_log()
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as exc:
        raise EnvironmentUnavailable(
            f"{env_id} needs a package that is not installed: {exc}"
        ) from None
    except (gym.error.Error, TypeError) as exc:
        raise EnvironmentUnavailable(f"Could not build {env_id}: {exc}") from None
    if render:
        if "rgb_array" not in env.metadata.get("render_modes", []):
            env.close()
            raise EnvironmentUnavailable(
                f"{env_id} cannot render RGB frames, so it has nothing to show annotators."
            )
        env = (
            _MujocoFrames(env) if mujoco_env else _DownscaledFrames(env, width=width, height=height)
        )
    return env


def _jsonable_bound(values: np.ndarray) -> Any:
    """A bound as JSON: one number when uniform, else a list; ±inf becomes null (not JSON)."""
    flat = [
        None if not np.isfinite(v) else float(v)
        for v in np.asarray(values, dtype=np.float64).ravel()
    ]
    return flat[0] if len(set(flat)) == 1 else flat


def describe_space(space: gym.Space[Any]) -> dict[str, Any]:
    """A JSON-serialisable description: type, shape, dtype, and bounds (Box) or n (Discrete)."""
    description: dict[str, Any] = {
        "type": type(space).__name__,
        "shape": list(space.shape) if space.shape is not None else None,
        "dtype": str(space.dtype) if space.dtype is not None else None,
    }
    if isinstance(space, gym.spaces.Box):
        description["low"] = _jsonable_bound(space.low)
        description["high"] = _jsonable_bound(space.high)
    elif isinstance(space, gym.spaces.Discrete):
        description["n"] = int(space.n)
        description["start"] = int(space.start)
    elif isinstance(space, gym.spaces.MultiDiscrete):
        description["nvec"] = np.asarray(space.nvec).tolist()
    return description


# --------------------------------------------------------------------------- rollouts


@dataclass(frozen=True)
class Rollout:
    """One episode (possibly cut at ``max_steps``) of T steps.

    observations: (T, *obs_shape) — ``observations[t]`` is the state ``actions[t]`` was taken in
    actions:      (T,) int64 for Discrete spaces, (T, act_dim) float32 for Box spaces
    rewards:      (T,) float64 — the env's true reward for step t
    terminations: (T,) bool — True only on a terminal step (not on time-limit truncation)
    frames:       (T, H, W, 3) uint8 or None — ``frames[t]`` shows ``observations[t]``'s state
    seed:         the seed the episode was reset with
    truncated:    True when a time limit or ``max_steps`` cut the episode short
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    frames: np.ndarray | None = None
    seed: int | None = None
    truncated: bool = False

    def __post_init__(self) -> None:
        length = self.observations.shape[0]
        if length == 0:
            raise ValueError("A rollout needs at least one step.")
        for name in ("actions", "rewards", "terminations", "frames"):
            array = getattr(self, name)
            if array is not None and array.shape[0] != length:
                raise ValueError(f"{name} has {array.shape[0]} steps, observations {length}.")
        if self.rewards.ndim != 1 or self.terminations.ndim != 1:
            raise ValueError("rewards and terminations must have shape (T,).")
        if self.frames is not None and (
            self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8
        ):
            raise ValueError(
                f"frames must be (T, H, W, 3) uint8, got {self.frames.shape} {self.frames.dtype}."
            )

    @property
    def length(self) -> int:
        return int(self.observations.shape[0])

    @property
    def true_return(self) -> float:
        return float(self.rewards.sum())


def collect_episode(
    env: gym.Env[Any, Any],
    policy: Policy,
    *,
    seed: int,
    max_steps: int | None = None,
    render: bool = True,
) -> Rollout:
    """Run one episode from ``env.reset(seed=seed)`` until it terminates, truncates or hits ``max_steps``.

    The same ``seed`` gives the same rollout: it seeds the env's reset and ``policy.reset``.
    With ``render``, each frame is grabbed *before* the step so that frame t, observation t
    and action t describe the same moment. Returns a :class:`Rollout` of T ≤ max_steps steps.
    """
    if max_steps is not None and max_steps < 1:
        raise ValueError("max_steps must be at least 1")
    observation, _ = env.reset(seed=seed)
    policy.reset(seed=seed)
    observations: list[np.ndarray] = []
    actions: list[Any] = []
    rewards: list[float] = []
    terminations: list[bool] = []
    frames: list[np.ndarray] = []
    truncated = False
    step = 0
    while max_steps is None or step < max_steps:
        if render:
            frames.append(np.asarray(env.render(), dtype=np.uint8))
        action = policy.act(observation)
        next_observation, reward, terminated, truncated, _ = env.step(action)
        observations.append(np.asarray(observation))
        actions.append(action)
        rewards.append(float(reward))
        terminations.append(bool(terminated))
        observation = next_observation
        step += 1
        if terminated or truncated:
            break
    else:
        truncated = True  # stopped by max_steps
    if isinstance(env.action_space, gym.spaces.Discrete):
        action_array = np.asarray(actions, dtype=np.int64)  # (T,)
    else:
        action_array = np.stack([np.asarray(a, dtype=np.float32) for a in actions])  # (T, act_dim)
    return Rollout(
        observations=np.stack(observations),  # (T, *obs_shape)
        actions=action_array,
        rewards=np.asarray(rewards, dtype=np.float64),
        terminations=np.asarray(terminations, dtype=bool),
        frames=np.stack(frames) if render else None,  # (T, H, W, 3)
        seed=seed,
        truncated=bool(truncated) and not terminations[-1],
    )


def policy_for(spec: str, env: gym.Env[Any, Any], *, algo: str = "ppo") -> Policy:
    """``"random"``, ``"scripted"`` or a path to a Stable-Baselines3 ``.zip``, as a :class:`Policy`.

    Raises :class:`NoScriptedPolicy` or :class:`CheckpointError` with a message for the user.
    """
    if spec == "random":
        return RandomPolicy(env.action_space)
    if spec == "scripted":
        return scripted_policy(env)
    return load_sb3_policy(spec, algo=algo, env=env)
