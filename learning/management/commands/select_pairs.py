"""Queue the next pairs of a campaign: chosen by the promoted reward model's ensemble
disagreement (active selection, Christiano et al. 2017) or at random."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback.models import Campaign
from feedback.services import NotEnoughSegments
from learning.pair_selection import DISAGREEMENT, RANDOM, NoPromotedModel, pairs_select


class Command(BaseCommand):
    help = (
        "Queue new pairs for a campaign, scored by the disagreement of the promoted reward "
        "model's ensemble (default) or drawn at random."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--campaign", type=int, required=True, help="Campaign id.")
        parser.add_argument("--count", type=int, required=True, help="Pairs to queue.")
        parser.add_argument(
            "--selector",
            choices=[DISAGREEMENT, RANDOM],
            default=DISAGREEMENT,
            help="disagreement (needs a promoted reward model) or random.",
        )
        parser.add_argument(
            "--candidates",
            type=int,
            default=None,
            help="Size of the random pool of new pairs to choose from (default max(10×count, 100)).",
        )
        parser.add_argument("--seed", type=int, default=None, help="Seed of the candidate draw.")
        parser.add_argument("--priority", type=int, default=0, help="Queue priority of the pairs.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            campaign = Campaign.objects.get(pk=options["campaign"])
        except Campaign.DoesNotExist:
            raise CommandError(f"No campaign with id {options['campaign']}.") from None
        try:
            pairs = pairs_select(
                selector=options["selector"],
                campaign=campaign,
                count=options["count"],
                candidates=options["candidates"],
                seed=options["seed"],
                priority=options["priority"],
            )
        except (NoPromotedModel, NotEnoughSegments, ValueError) as exc:
            raise CommandError(str(exc)) from None
        version = (
            f" with model version {pairs[0].model_version}"
            if pairs and pairs[0].model_version
            else ""
        )
        self.stdout.write(
            f"Queued {len(pairs)} {options['selector']} pair(s) in campaign {campaign.pk}{version}."
        )
