"""``manage.py collect_rollouts``: run a policy in a Gymnasium env and queue-ready clips of it."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback.rendering import ClipEncodingError
from feedback.services.trajectories import default_segment_length
from learning.core.rollouts import SB3_ALGORITHMS
from learning.rollout_import import RolloutImportError, rollouts_import


class Command(BaseCommand):
    help = (
        "Run a policy (random, scripted, or a Stable-Baselines3 .zip) in a Gymnasium env, store "
        "each episode as a trajectory and encode an MP4 clip per segment."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--env", required=True, help="Gymnasium id, e.g. CartPole-v1 or Hopper-v5"
        )
        parser.add_argument(
            "--policy",
            required=True,
            help="'random', 'scripted' or the path of an SB3 .zip checkpoint",
        )
        parser.add_argument(
            "--algo", default="ppo", choices=SB3_ALGORITHMS, help="SB3 algorithm of the checkpoint"
        )
        parser.add_argument("--episodes", type=int, default=1)
        parser.add_argument(
            "--segment-length", type=int, default=None, help="steps per clip (default: settings)"
        )
        parser.add_argument("--seed", type=int, default=0, help="episode i is reset with seed S+i")
        parser.add_argument(
            "--max-steps",
            type=int,
            default=None,
            help="cut episodes at M steps (default: env limit)",
        )
        parser.add_argument(
            "--fps", type=int, default=None, help="clip frame rate (default: env's)"
        )
        parser.add_argument("--width", type=int, default=256, help="MuJoCo render width")
        parser.add_argument("--height", type=int, default=256, help="MuJoCo render height")
        parser.add_argument(
            "--skip-existing",
            action="store_true",
            help="do not collect seeds this policy already has a trajectory for",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        segment_length = options["segment_length"] or default_segment_length()
        try:
            summary = rollouts_import(
                env_id=options["env"],
                policy=options["policy"],
                algo=options["algo"],
                episodes=options["episodes"],
                segment_length=segment_length,
                seed=options["seed"],
                max_steps=options["max_steps"],
                fps=options["fps"],
                width=options["width"],
                height=options["height"],
                skip_existing=options["skip_existing"],
                progress=options["verbosity"] > 0,
            )
        except RolloutImportError as exc:
            raise CommandError(str(exc)) from None
        except ClipEncodingError as exc:
            raise CommandError(
                f"{exc}. The episode being stored was removed; episodes stored before it are kept "
                "(re-run with --skip-existing to collect only the missing seeds)."
            ) from exc
        mean = summary.mean_return
        self.stdout.write(
            self.style.SUCCESS(
                f"{summary.env_id} / {summary.policy_name}: stored {summary.trajectories_created} episode(s) "
                f"({summary.steps} steps, mean true return "
                f"{'n/a' if mean is None else f'{mean:.1f}'}), {summary.segments_ready} clips ready"
                + (
                    f", {summary.episodes_skipped} seeds already collected"
                    if summary.episodes_skipped
                    else ""
                )
                + f" in {summary.seconds:.1f} s."
            )
        )
