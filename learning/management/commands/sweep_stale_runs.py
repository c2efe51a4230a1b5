"""Fail or re-queue training runs whose worker died (no heartbeat for a while).

Every training job already sweeps when it starts; run this from cron or a systemd timer (every
minute or so) so a lost run is noticed even when no new job comes:
``manage.py sweep_stale_runs --requeue``, or as a long-lived process with ``--every S``.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from learning import services


class Command(BaseCommand):
    help = (
        "Mark running training runs without a recent heartbeat as failed, or with --requeue put "
        "them back in the queue to resume from their last checkpoint."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--stale-after",
            type=float,
            default=services.STALE_AFTER_S,
            metavar="S",
            help=f"Seconds without a heartbeat before a run counts as lost "
            f"(default {services.STALE_AFTER_S:g}).",
        )
        parser.add_argument(
            "--requeue",
            action="store_true",
            help=f"Re-queue lost runs (up to {services.MAX_ATTEMPTS} attempts) instead of "
            "failing them.",
        )
        parser.add_argument(
            "--every",
            type=float,
            default=0.0,
            metavar="S",
            help="Keep running, one sweep every S seconds (default: one sweep, then exit).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stale_after = options["stale_after"]
        if stale_after <= 0:
            raise CommandError(
                f"--stale-after must be a positive number of seconds, got {stale_after:g}."
            )
        every = options["every"]
        if every < 0:
            raise CommandError(
                f"--every must be zero or a positive number of seconds, got {every:g}."
            )
        while True:
            touched = services.run_mark_stale(
                stale_after_s=stale_after, requeue=options["requeue"]
            )
            if touched:
                ids = ", ".join(str(pk) for pk in touched)
                self.stdout.write(f"Swept {len(touched)} stale run(s): {ids}.")
            elif not every:
                self.stdout.write("No stale runs.")
            if not every:
                return
            time.sleep(every)
