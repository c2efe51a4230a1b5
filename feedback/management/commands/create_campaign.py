"""Create a labelling campaign for an environment's segments."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError, transaction

from feedback import services
from feedback.models import EnvironmentSpec


class Command(BaseCommand):
    help = "Create a campaign over the ready segments of one environment."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--env", required=True, help="Gymnasium id, e.g. CartPole-v1")
        parser.add_argument("--segment-length", type=int, required=True)
        parser.add_argument("--overlap", type=int, default=1, help="labels wanted per pair")
        parser.add_argument("--lease-seconds", type=int, default=600)
        parser.add_argument("--instructions", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            env = EnvironmentSpec.objects.get(env_id=options["env"])
        except EnvironmentSpec.DoesNotExist:
            raise CommandError(
                f"No trajectories of {options['env']!r} yet; run collect_rollouts for it first."
            ) from None
        for flag, minimum in (("segment_length", 1), ("overlap", 1), ("lease_seconds", 5)):
            if options[flag] < minimum:
                raise CommandError(f"--{flag.replace('_', '-')} must be at least {minimum}.")
        try:
            with transaction.atomic():
                campaign = services.campaign_create(
                    name=options["name"], env=env, segment_length=options["segment_length"],
                    overlap=options["overlap"], lease_seconds=options["lease_seconds"],
                    instructions=options["instructions"],
                )
        except IntegrityError:
            raise CommandError(f"A campaign named {options['name']!r} already exists.") from None
        self.stdout.write(self.style.SUCCESS(f"Created campaign {campaign.pk} '{campaign.name}'."))
