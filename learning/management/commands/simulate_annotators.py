"""``manage.py simulate_annotators``: B-Pref teachers label a campaign over HTTP.

Creates (or reuses) users ``sim-<teacher>-<i>`` in the groups ``annotator`` and
``simulated``, gives each an API token, and runs one thread per user against a running
PrefLab server (``--base-url``): ``POST next`` → teacher's answer from the true rewards →
``POST judgement``, exactly like a browser. The server records their judgements as
simulated. See :mod:`learning.simulation`.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.authtoken.models import Token

from feedback.models import Campaign
from feedback.roles import ANNOTATOR, SIMULATED
from feedback.services.annotation import campaign_may_label
from learning.core.teachers import TEACHER_NAMES, teacher
from learning.simulation import (
    AnnotatorClient,
    SimulationError,
    campaign_return_range,
    run_simulation,
)


def simulated_users(teacher_name: str, count: int) -> list[User]:
    """``sim-<teacher>-1`` … ``sim-<teacher>-<count>``, in groups annotator and simulated."""
    groups = [Group.objects.get_or_create(name=name)[0] for name in (ANNOTATOR, SIMULATED)]
    users = []
    for index in range(1, count + 1):
        user, created = User.objects.get_or_create(username=f"sim-{teacher_name}-{index}")
        if created:
            user.set_unusable_password()  # API tokens only; nobody logs in as a simulation
            user.save(update_fields=["password"])
        user.groups.add(*groups)
        users.append(user)
    return users


class Command(BaseCommand):
    help = (
        "Label a campaign with simulated B-Pref annotators answering from true rewards, "
        "through the annotation API of a running server."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--campaign", type=int, required=True, help="Campaign id.")
        parser.add_argument(
            "--teacher", required=True, help=f"B-Pref teacher: {', '.join(TEACHER_NAMES)}."
        )
        parser.add_argument("--workers", type=int, default=1, help="Annotators labelling at once.")
        parser.add_argument(
            "--labels", type=int, default=None, help="Stop after this many labels in total."
        )
        parser.add_argument(
            "--base-url", default="http://127.0.0.1:8000", help="The PrefLab server to label on."
        )
        parser.add_argument("--beta", type=float, help="Rationality β (stoc; default ∞ or 1).")
        parser.add_argument("--epsilon", type=float, help="Mistake probability ε (mistake).")
        parser.add_argument("--gamma", type=float, help="Myopia γ ∈ (0, 1] (myopic).")
        parser.add_argument(
            "--skip-threshold", type=float, help="Skip fraction of the return range (skip)."
        )
        parser.add_argument(
            "--equal-threshold", type=float, help="Equal fraction of the return range (equal)."
        )
        parser.add_argument("--seed", type=int, default=None, help="Seed of the teachers' draws.")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["teacher"]
        if name not in TEACHER_NAMES:
            raise CommandError(
                f"Unknown teacher {name!r}; choose one of {', '.join(TEACHER_NAMES)}."
            )
        overrides = {
            field: options[option]
            for option, field in (
                ("beta", "beta"),
                ("epsilon", "mistake"),
                ("gamma", "gamma"),
                ("skip_threshold", "skip_threshold"),
                ("equal_threshold", "equal_threshold"),
            )
            if options[option] is not None
        }
        try:
            config = teacher(name, **overrides)
        except ValueError as exc:
            message = str(exc).replace("mistake must", "--epsilon (mistake) must")
            raise CommandError(message) from None
        workers, labels = options["workers"], options["labels"]
        if workers < 1:
            raise CommandError(f"--workers must be at least 1, got {workers}.")
        if labels is not None and labels < 1:
            raise CommandError(f"--labels must be at least 1, got {labels}.")

        try:
            campaign = Campaign.objects.get(pk=options["campaign"])
        except Campaign.DoesNotExist:
            raise CommandError(f"No campaign with id {options['campaign']}.") from None
        if campaign.status != Campaign.Status.ACTIVE:
            raise CommandError(
                f"Campaign {campaign.pk} ('{campaign.name}') is {campaign.status}; only active "
                "campaigns hand out pairs."
            )
        return_range = campaign_return_range(campaign)
        if return_range is None:
            raise CommandError(
                f"Campaign {campaign.pk} ('{campaign.name}') has no segments with true rewards; "
                "simulated annotators answer from true rewards."
            )

        users = simulated_users(name, workers)
        if not campaign_may_label(campaign, users[0]):
            raise CommandError(
                f"Campaign {campaign.pk} ('{campaign.name}') is open only to invited annotators "
                f"and chosen groups; add the group '{SIMULATED}' to its allowed groups."
            )
        tokens = [Token.objects.get_or_create(user=user)[0].key for user in users]
        self._check_server(options["base_url"], tokens[0], users[0].username)

        try:
            result = run_simulation(
                campaign_id=campaign.pk,
                base_url=options["base_url"],
                tokens=tokens,
                teacher_name=name,
                teacher=config,
                return_range=return_range,
                labels=labels,
                seed=options["seed"],
            )
        except SimulationError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(result.summary())
        if result.errors and result.labels == 0:
            raise CommandError(f"No label was recorded: {result.errors[0]}")

    @staticmethod
    def _check_server(base_url: str, token: str, username: str) -> None:
        """Fail early, naming the problem, when the server is unreachable or foreign."""
        try:
            client = AnnotatorClient(base_url, token, timeout=30)
        except SimulationError as exc:
            raise CommandError(str(exc)) from None
        try:
            status, body = client.request("GET", "/api/v1/me/")
        except OSError as exc:
            raise CommandError(f"Cannot reach the PrefLab server at {base_url}: {exc}") from None
        finally:
            client.close()
        if status != 200 or not isinstance(body, dict) or body.get("username") != username:
            raise CommandError(
                f"The server at {base_url} did not accept {username}'s token (HTTP {status}); "
                "is it serving this database?"
            )
