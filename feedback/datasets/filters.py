"""Which judgements a dataset snapshot holds: a frozen, JSON-round-trippable filter set.

Filters are validated once, here, so the API, the management command and the web page all
refuse the same bad input with the same message, and the snapshot row records exactly what
was applied (``DatasetFilters.to_json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SOURCES = ("all", "human", "simulated")
MAX_ID = 2**63 - 1  # a 64-bit primary key: larger ids cannot even be sent to the database


class DatasetFilterError(ValueError):
    """A filter is malformed; the message names the field and what is allowed."""


@dataclass(frozen=True)
class DatasetFilters:
    campaign_ids: tuple[int, ...]
    """Campaigns to export (at least one)."""
    created_from: datetime | None = None
    """Only judgements recorded at or after this instant (UTC)."""
    created_to: datetime | None = None
    """Only judgements recorded before this instant (UTC, exclusive)."""
    annotators: tuple[str, ...] = ()
    """Only these usernames; empty means everyone."""
    exclude_excluded: bool = True
    """Leave out annotators a researcher excluded from the campaign (AnnotatorExclusion)."""
    exclude_flagged: bool = False
    """Leave out annotators quality control flags (too fast, low gold accuracy, position bias,
    low agreement, inconsistent) in the campaign's statistics."""
    source: str = "all"
    """``all``, ``human`` (no simulated teachers) or ``simulated`` only."""
    min_agreement: float | None = None
    """Keep pairs whose majority answer has at least this share of the decisive votes (0–1);
    pairs without a majority are dropped when set."""
    include_gold: bool = True
    """Keep gold pairs (known answer, quality control)."""
    include_repeats: bool = False
    """Keep the private mirrored re-showings used to measure self-consistency."""

    def __post_init__(self) -> None:
        if not self.campaign_ids:
            raise DatasetFilterError("campaign_ids: give at least one campaign id.")
        if any(not isinstance(c, int) or isinstance(c, bool) or not 1 <= c <= MAX_ID for c in self.campaign_ids):
            raise DatasetFilterError(
                f"campaign_ids: every campaign id must be a positive integer (at most {MAX_ID}).")
        if self.source not in SOURCES:
            raise DatasetFilterError(f"source: must be one of {', '.join(SOURCES)}; got {self.source!r}.")
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            raise DatasetFilterError(f"min_agreement: must lie in [0, 1]; got {self.min_agreement}.")
        for name in ("created_from", "created_to"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise DatasetFilterError(f"{name}: give a time zone (e.g. 2026-01-31T00:00:00Z).")
        if self.created_from and self.created_to and self.created_from >= self.created_to:
            raise DatasetFilterError("created_from must be earlier than created_to.")

    def to_json(self) -> dict[str, Any]:
        """Canonical JSON: sorted campaign ids and usernames, UTC ISO-8601 instants."""
        return {
            "campaign_ids": sorted(set(self.campaign_ids)),
            "created_from": _iso(self.created_from),
            "created_to": _iso(self.created_to),
            "annotators": sorted(set(self.annotators)),
            "exclude_excluded": self.exclude_excluded,
            "exclude_flagged": self.exclude_flagged,
            "source": self.source,
            "min_agreement": self.min_agreement,
            "include_gold": self.include_gold,
            "include_repeats": self.include_repeats,
        }

    @classmethod
    def from_json(cls, data: Any) -> DatasetFilters:
        """Parse user input (API body, command-line options); raises DatasetFilterError."""
        if not isinstance(data, dict):
            raise DatasetFilterError("filters: must be a JSON object.")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise DatasetFilterError(
                f"unknown filter(s) {', '.join(unknown)}; allowed: {', '.join(cls.__dataclass_fields__)}."
            )
        campaign_ids = data.get("campaign_ids")
        if not isinstance(campaign_ids, list | tuple):
            raise DatasetFilterError("campaign_ids: give a list of campaign ids, e.g. [3].")
        annotators = data.get("annotators") or []
        if not isinstance(annotators, list | tuple) or not all(isinstance(a, str) and a for a in annotators):
            raise DatasetFilterError("annotators: give a list of usernames.")
        min_agreement = data.get("min_agreement")
        if min_agreement is not None:
            if isinstance(min_agreement, bool) or not isinstance(min_agreement, int | float):
                raise DatasetFilterError("min_agreement: must be a number in [0, 1].")
            min_agreement = float(min_agreement)
        return cls(
            campaign_ids=tuple(campaign_ids),
            created_from=_parse_instant("created_from", data.get("created_from")),
            created_to=_parse_instant("created_to", data.get("created_to")),
            annotators=tuple(annotators),
            exclude_excluded=_flag(data, "exclude_excluded", True),
            exclude_flagged=_flag(data, "exclude_flagged", False),
            source=str(data.get("source", "all")),
            min_agreement=min_agreement,
            include_gold=_flag(data, "include_gold", True),
            include_repeats=_flag(data, "include_repeats", False),
        )


def _flag(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise DatasetFilterError(f"{name}: must be true or false; got {value!r}.")
    return value


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_instant(name: str, value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise DatasetFilterError(
                f"{name}: {value!r} is not an ISO-8601 date-time (e.g. 2026-01-31T00:00:00Z)."
            ) from None
    else:
        raise DatasetFilterError(f"{name}: must be an ISO-8601 date-time string.")
    if parsed.tzinfo is None:
        raise DatasetFilterError(f"{name}: give a time zone (e.g. 2026-01-31T00:00:00Z).")
    return parsed
