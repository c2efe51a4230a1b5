"""Export a versioned dataset snapshot of one or more campaigns."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback.datasets.export import DatasetExportError
from feedback.datasets.filters import DatasetFilterError, DatasetFilters
from feedback.datasets.services import FORMATS, snapshot_create
from feedback.models import Campaign


class Command(BaseCommand):
    help = (
        "Export campaigns' judgements as a frozen, content-hashed dataset snapshot (Parquet always; "
        "JSONL, Hugging Face datasets and Minari on request). Builds here unless --background."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--campaign", action="append", required=True,
                            help="campaign name or numeric id (repeat for several)")
        parser.add_argument("--name", help="snapshot name (default: the campaigns' names)")
        parser.add_argument("--format", action="append", choices=FORMATS, default=[],
                            help="extra format (repeatable); parquet is always written")
        parser.add_argument("--from", dest="created_from", help="judgements at or after (ISO-8601 with zone)")
        parser.add_argument("--to", dest="created_to", help="judgements before (ISO-8601 with zone)")
        parser.add_argument("--annotator", action="append", default=[], help="only these usernames (repeatable)")
        parser.add_argument("--include-excluded", action="store_true",
                            help="keep annotators a researcher excluded from the campaign")
        parser.add_argument("--exclude-flagged", action="store_true",
                            help="leave out annotators quality control flags")
        parser.add_argument("--source", choices=("all", "human", "simulated"), default="all")
        parser.add_argument("--min-agreement", type=float, default=None,
                            help="keep pairs whose majority has at least this share of decisive votes")
        parser.add_argument("--no-gold", action="store_true", help="leave out gold pairs")
        parser.add_argument("--include-repeats", action="store_true", help="keep self-consistency repeats")
        parser.add_argument("--out", help="also copy the snapshot's files into this directory")
        parser.add_argument("--background", action="store_true",
                            help="queue the export for a worker (manage.py db_worker) instead of building here")

    def handle(self, *args: Any, **options: Any) -> None:
        campaign_ids = []
        for ref in options["campaign"]:
            lookup = {"pk": int(ref)} if ref.isdigit() else {"name": ref}
            campaign = Campaign.objects.filter(**lookup).first()
            if campaign is None:
                raise CommandError(f"No campaign {ref!r}.")
            campaign_ids.append(campaign.pk)
        try:
            filters = DatasetFilters.from_json({
                "campaign_ids": campaign_ids, "created_from": options["created_from"],
                "created_to": options["created_to"], "annotators": options["annotator"],
                "exclude_excluded": not options["include_excluded"],
                "exclude_flagged": options["exclude_flagged"], "source": options["source"],
                "min_agreement": options["min_agreement"], "include_gold": not options["no_gold"],
                "include_repeats": options["include_repeats"],
            })
            name = options["name"] or " + ".join(
                Campaign.objects.filter(pk__in=campaign_ids).order_by("pk").values_list("name", flat=True))
            snapshot = snapshot_create(name=name[:200], filters=filters, formats=["parquet", *options["format"]],
                                       background=options["background"])
        except (DatasetFilterError, DatasetExportError) as exc:
            raise CommandError(str(exc)) from None
        if options["background"]:
            self.stdout.write(f"Snapshot {snapshot.pk} queued; a worker (manage.py db_worker) builds it.")
            return
        if snapshot.status != snapshot.Status.SUCCEEDED:
            raise CommandError(f"Snapshot {snapshot.pk} failed: {snapshot.error}")
        self.stdout.write(
            f"Snapshot {snapshot.pk}: {snapshot.counts['pairs']} pairs, {snapshot.counts['judgements']} judgements, "
            f"sha256 {snapshot.content_hash}")
        if options["out"]:
            out = Path(options["out"])
            out.mkdir(parents=True, exist_ok=True)
            for name, meta in sorted(snapshot.files.items()):
                with default_storage.open(meta["path"], "rb") as source, (out / name).open("wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
                self.stdout.write(f"  {out / name} ({meta['bytes']} bytes)")
