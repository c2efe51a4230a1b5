"""Queue a reward-model training run for a campaign.

This only enqueues; a worker trains it: ``manage.py db_worker`` (the database backend, the
default) or an RQ worker when ``PREFLAB_TASKS_BACKEND=rq``. Watch the run at
``/api/v1/learning/runs/<id>/``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback.models import Campaign
from learning import services
from learning.core.configs import ConfigError
from learning.runner import RunConfig


class Command(BaseCommand):
    help = (
        "Queue a reward-model training run for a campaign (a db_worker trains it) and print its id."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--campaign", type=int, required=True, help="Campaign id.")
        parser.add_argument("--ensemble-size", type=int, help="RewardNetConfig.ensemble_size.")
        parser.add_argument("--max-epochs", type=int, help="RewardTrainingConfig.max_epochs.")
        parser.add_argument(
            "--device", choices=["auto", "cpu", "cuda"], help="RewardTrainingConfig.device."
        )
        parser.add_argument("--seed", type=int, help="RewardTrainingConfig.seed.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            campaign = Campaign.objects.get(pk=options["campaign"])
        except Campaign.DoesNotExist:
            raise CommandError(f"No campaign with id {options['campaign']}.") from None
        net = (
            {"ensemble_size": options["ensemble_size"]}
            if options["ensemble_size"] is not None
            else {}
        )
        train = {
            key: options[key]
            for key in ("max_epochs", "device", "seed")
            if options[key] is not None
        }
        try:
            config = RunConfig.from_dict({"net": net, "train": train})
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        run = services.run_enqueue(campaign=campaign, config=config, triggered_by=None)
        self.stdout.write(
            f"Queued training run {run.pk} on campaign {campaign.pk} "
            f"({run.dataset['num_judgements']} judgements). Start a worker to train it: "
            "manage.py db_worker"
        )
        self.stdout.write(str(run.pk))
