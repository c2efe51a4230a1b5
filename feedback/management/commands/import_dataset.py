"""Import a dataset snapshot exported by another PrefLab instance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback.datasets.importer import DatasetImportError, snapshot_import


class Command(BaseCommand):
    help = (
        "Import a snapshot.zip (or a directory with manifest.json, pairs.parquet, segments.parquet): "
        "trajectories, segments, campaigns (paused), pairs, annotators (inactive placeholders when "
        "unknown) and judgements, in one transaction. Importing the same snapshot twice does nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="snapshot.zip or its unpacked directory")
        parser.add_argument("--user-prefix", default="",
                            help="prefix for imported usernames, e.g. 'lab-b:' to keep them apart from local accounts")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            snapshot, created = snapshot_import(source=Path(options["path"]), user_prefix=options["user_prefix"])
        except DatasetImportError as exc:
            raise CommandError(str(exc)) from None
        if not created:
            self.stdout.write(f"Already imported as snapshot {snapshot.pk} (sha256 {snapshot.content_hash}); nothing written.")
            return
        campaigns = ", ".join(f"{c.name} (id {c.pk})" for c in snapshot.campaigns.order_by("pk"))
        self.stdout.write(
            f"Imported snapshot {snapshot.pk}: {snapshot.counts.get('pairs')} pairs, "
            f"{snapshot.counts.get('judgements')} judgements into {campaigns}.")
