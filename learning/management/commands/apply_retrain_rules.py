"""Queue reward-model runs for campaigns whose "retrain after N new judgements" rule is due.

Run it from cron or a systemd timer beside ``sweep_stale_runs`` (every minute or so), or as a
long-lived process with ``--every S``: ``manage.py apply_retrain_rules --every 30``. Each pass
is one COUNT per enabled rule; a campaign that already has a queued or running run waits.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from learning import services


class Command(BaseCommand):
    help = "Queue reward-model runs for campaigns whose retrain-after-N-judgements rule is due."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--every",
            type=float,
            default=0.0,
            metavar="S",
            help="Keep running, one pass every S seconds (default: one pass, then exit).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        every = options["every"]
        if every < 0:
            raise CommandError(
                f"--every must be zero or a positive number of seconds, got {every:g}."
            )
        while True:
            runs = services.retrain_rules_apply()
            for run in runs:
                self.stdout.write(
                    f"Queued training run {run.pk} on campaign {run.campaign_id} "
                    f"({run.dataset['num_judgements']} judgements)."
                )
            if not every:
                if not runs:
                    self.stdout.write("No retrain rule is due.")
                return
            time.sleep(every)
