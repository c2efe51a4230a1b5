"""Queue random pairs of ready segments in a campaign."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback import services
from feedback.models import Campaign


class Command(BaseCommand):
    help = "Queue N random pairs of ready segments in a campaign (by name or id)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--campaign", required=True, help="campaign name or numeric id")
        parser.add_argument("--count", type=int, required=True)
        parser.add_argument("--priority", type=int, default=0)
        parser.add_argument("--seed", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        ref = options["campaign"]
        lookup = {"pk": int(ref)} if ref.isdigit() else {"name": ref}
        try:
            campaign = Campaign.objects.get(**lookup)
        except Campaign.DoesNotExist:
            raise CommandError(f"No campaign {ref!r}; create one in the admin or with create_campaign.") from None
        if options["count"] < 1:
            raise CommandError("--count must be at least 1.")
        try:
            pairs = services.pairs_create_random(
                campaign=campaign, count=options["count"], seed=options["seed"], priority=options["priority"]
            )
        except services.NotEnoughSegments as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Queued {len(pairs)} pairs in '{campaign.name}'."))
