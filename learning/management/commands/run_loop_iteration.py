"""Queue one loop iteration for a campaign: reward model → policy → rollouts → pairs.

This only enqueues; a worker carries it out (``manage.py db_worker``, or an RQ worker when
``PREFLAB_TASKS_BACKEND=rq``). Watch it at ``/training/runs/<id>/``.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback.models import Campaign
from learning import services
from learning.core.configs import ConfigError
from learning.loop import LoopRunConfig
from learning.models import RunKind


class Command(BaseCommand):
    help = "Queue one RLHF loop iteration for a campaign (a db_worker runs it) and print its id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--campaign", type=int, required=True, help="Campaign id.")
        parser.add_argument("--steps", type=int, help="FinetuneConfig.total_steps (env steps).")
        parser.add_argument("--algo", help="FinetuneConfig.algo: auto, ppo, sac, dqn or a2c.")
        parser.add_argument("--episodes", type=int, help="LoopSettings.episodes to roll out.")
        parser.add_argument("--pairs", type=int, help="LoopSettings.pairs to queue.")
        parser.add_argument("--selector", help="LoopSettings.selector: disagreement or random.")
        parser.add_argument(
            "--config",
            help='Full config as JSON: {"net": …, "train": …, "finetune": …, "loop": …}; the '
            "flags above override it.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            campaign = Campaign.objects.get(pk=options["campaign"])
        except Campaign.DoesNotExist:
            raise CommandError(f"No campaign with id {options['campaign']}.") from None
        try:
            raw = json.loads(options["config"]) if options["config"] else {}
        except json.JSONDecodeError as exc:
            raise CommandError(f"--config is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise CommandError("--config must be a JSON object of sections.")
        finetune = dict(raw.get("finetune") or {})
        loop = dict(raw.get("loop") or {})
        for flag, section, field in (
            ("steps", finetune, "total_steps"),
            ("algo", finetune, "algo"),
            ("episodes", loop, "episodes"),
            ("pairs", loop, "pairs"),
            ("selector", loop, "selector"),
        ):
            if options[flag] is not None:
                section[field] = options[flag]
        try:
            config = LoopRunConfig.from_dict({**raw, "finetune": finetune, "loop": loop})
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        run = services.run_enqueue(
            campaign=campaign, config=config, triggered_by=None, kind=RunKind.LOOP
        )
        self.stdout.write(
            f"Queued loop iteration {run.pk} on campaign {campaign.pk} "
            f"({run.dataset['num_judgements']} judgements). Start a worker to run it: "
            "manage.py db_worker"
        )
        self.stdout.write(str(run.pk))
