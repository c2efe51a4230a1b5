"""``manage.py seed_demo``: logins, real rollouts with clips, and two campaigns with pairs queued.

Each campaign also gets quality control: practice pairs (the practice round shown before an
annotator's first label), gold pairs mixed into the queue at a gold rate, and a repeat rate
for self-consistency. Both demo envs report true rewards, which gold pairs are answered by.

Idempotent: every step first looks at what is already there, so a second run only reads
(about a second) and creates nothing. Users that already exist keep their passwords.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import F

from feedback import services
from feedback.models import Campaign, EnvironmentSpec, Segment
from feedback.roles import ADMIN, ANNOTATOR, RESEARCHER, ensure_groups
from learning.rollout_import import RolloutImportError, rollouts_import


@dataclass(frozen=True)
class DemoUser:
    username: str
    group: str
    superuser: bool = False

    @property
    def password(self) -> str:
        return f"preflab-{self.username}"


@dataclass(frozen=True)
class DemoPolicy:
    """Collect episodes of ``policy`` until ``ready_segments`` clips of campaign length exist."""

    policy: str
    max_steps: int
    ready_segments: int
    episodes_per_batch: int
    seed: int = 0
    max_episodes: int = 60  # a safety stop should the env stop producing long-enough episodes


@dataclass(frozen=True)
class DemoEnv:
    env_id: str
    segment_length: int
    campaign: str
    instructions: str
    policies: tuple[DemoPolicy, ...]
    pairs: int
    practice_pairs: int
    gold_pairs: int


# Quality control on the demo campaigns, set when their gold pairs are first created.
GOLD_RATE = 0.1
REPEAT_RATE = 0.05


USERS = (
    DemoUser("annotator", ANNOTATOR),
    DemoUser("researcher", RESEARCHER),
    DemoUser("admin", ADMIN, superuser=True),
)

CARTPOLE_INSTRUCTIONS = (
    "Each clip shows a cart that tries to keep a pole balanced upright. Prefer the clip in which "
    "the pole stays upright longer and the cart stays near the middle of the track. A clip that "
    "stops early means the pole fell over. Mark a clip undesirable if the pole falls."
)
CHEETAH_INSTRUCTIONS = (
    "Each clip shows a two-legged 'cheetah' robot from the side; forward is to the right. Prefer "
    "the clip in which it runs forward faster with a steady gait. Twitching in place, moving "
    "backwards or flipping over is worse. Mark a clip desirable if you would want the robot to "
    "move like that."
)


def demo_envs(*, quick: bool) -> tuple[DemoEnv, ...]:
    """The demo content. ``quick`` is a small version for tests (a few seconds on 2 cores)."""
    # Random CartPole episodes last ~10–40 steps, so about two in three yield one 15–30-step
    # segment; the scripted controller never drops the pole, so its episodes are cut short.
    cartpole_target, cheetah_target = (3, 2) if quick else (12, 12)
    # The quick pools are small: the quick CartPole one (7 clips) has 9 pairs far enough
    # apart in true return, the quick HalfCheetah one (4 clips) only 2.
    return (
        DemoEnv(
            env_id="CartPole-v1",
            segment_length=30,
            campaign="CartPole: keep the pole up",
            instructions=CARTPOLE_INSTRUCTIONS,
            policies=(
                DemoPolicy(
                    "random",
                    max_steps=200,
                    ready_segments=cartpole_target,
                    episodes_per_batch=4 if quick else 10,
                ),
                DemoPolicy(
                    "scripted",
                    max_steps=60 if quick else 210,
                    ready_segments=cartpole_target,
                    episodes_per_batch=2,
                ),
            ),
            pairs=6 if quick else 30,
            practice_pairs=2 if quick else 5,
            gold_pairs=3 if quick else 10,
        ),
        DemoEnv(
            env_id="HalfCheetah-v5",
            segment_length=50,
            campaign="HalfCheetah: run forward",
            instructions=CHEETAH_INSTRUCTIONS,
            policies=(
                DemoPolicy(
                    "random",
                    max_steps=100 if quick else 300,
                    ready_segments=cheetah_target,
                    episodes_per_batch=1 if quick else 2,
                ),
                DemoPolicy(
                    "scripted",
                    max_steps=100 if quick else 300,
                    ready_segments=cheetah_target,
                    episodes_per_batch=1 if quick else 2,
                ),
            ),
            pairs=3 if quick else 30,
            practice_pairs=1 if quick else 5,
            gold_pairs=1 if quick else 10,
        ),
    )


def ready_segment_count(*, env_id: str, policy: str, segment_length: int) -> int:
    """Ready clips of ``policy`` in ``env_id`` that a campaign of ``segment_length`` can pair."""
    return (
        Segment.objects.filter(
            trajectory__env__env_id=env_id,
            trajectory__policy__name=policy,
            clip_status=Segment.ClipStatus.READY,
        )
        .annotate(span=F("end") - F("start"))
        .filter(span__gte=math.ceil(segment_length / 2), span__lte=segment_length)
        .count()
    )


class Command(BaseCommand):
    help = (
        "Create demo users, collect CartPole and HalfCheetah rollouts with clips, and queue pairs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quick", action="store_true", help="a small demo (used by the tests)")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.perf_counter()
        progress = options["verbosity"] > 0
        users = self._users()
        admin = users["admin"]
        for demo in demo_envs(quick=options["quick"]):
            self._collect(demo, progress=progress)
            self._campaign(demo, created_by=admin)
        self.stdout.write(
            self.style.SUCCESS(f"Demo ready in {time.perf_counter() - started:.1f} s.")
        )

    def _users(self) -> dict[str, User]:
        ensure_groups()
        users: dict[str, User] = {}
        lines = []
        with transaction.atomic():
            for spec in USERS:
                user, created = User.objects.get_or_create(username=spec.username)
                if created:
                    user.set_password(spec.password)
                    user.is_staff = user.is_superuser = spec.superuser
                    user.save()
                user.groups.add(Group.objects.get(name=spec.group))
                users[spec.username] = user
                note = spec.password if created else "(existing user, password unchanged)"
                lines.append(f"  {spec.username:<11} {note}")
        self.stdout.write("Logins (username / password):")
        self.stdout.write("\n".join(lines))
        return users

    def _collect(self, demo: DemoEnv, *, progress: bool) -> None:
        for spec in demo.policies:
            seed = spec.seed
            have = ready_segment_count(
                env_id=demo.env_id, policy=spec.policy, segment_length=demo.segment_length
            )
            while have < spec.ready_segments and seed < spec.seed + spec.max_episodes:
                try:
                    rollouts_import(
                        env_id=demo.env_id,
                        policy=spec.policy,
                        episodes=spec.episodes_per_batch,
                        segment_length=demo.segment_length,
                        seed=seed,
                        max_steps=spec.max_steps,
                        skip_existing=True,
                        progress=progress,
                    )
                except RolloutImportError as exc:
                    raise CommandError(f"Could not collect the {demo.env_id} demo: {exc}") from None
                seed += spec.episodes_per_batch
                have = ready_segment_count(
                    env_id=demo.env_id, policy=spec.policy, segment_length=demo.segment_length
                )
            if have < spec.ready_segments:
                raise CommandError(
                    f"Only {have} {demo.env_id} clips of the {spec.policy} policy after "
                    f"{spec.max_episodes} episodes (wanted {spec.ready_segments})."
                )
            self.stdout.write(f"{demo.env_id:<15} {spec.policy:<9} {have} ready clips")

    def _campaign(self, demo: DemoEnv, *, created_by: User) -> None:
        campaign = Campaign.objects.filter(name=demo.campaign).first()
        if campaign is None:
            campaign = services.campaign_create(
                name=demo.campaign,
                env=EnvironmentSpec.objects.get(env_id=demo.env_id),
                segment_length=demo.segment_length,
                instructions=demo.instructions,
                created_by=created_by,
            )
        # Gold pairs first: they take the pairs furthest apart in true return, and random
        # pairs never repeat a pair already queued.
        self._gold(campaign, demo)
        random_pairs = campaign.pairs.filter(is_gold=False, repeat_of__isnull=True)
        missing = demo.pairs - random_pairs.count()
        if missing > 0:
            try:
                services.pairs_create_random(campaign=campaign, count=missing, seed=0)
            except services.NotEnoughSegments as exc:
                raise CommandError(str(exc)) from None
        gold = campaign.pairs.filter(is_gold=True)
        self.stdout.write(
            f"campaign '{campaign.name}': {random_pairs.count()} pairs queued, "
            f"{gold.filter(is_practice=False).count()} gold, "
            f"{gold.filter(is_practice=True).count()} for practice"
        )

    def _gold(self, campaign: Campaign, demo: DemoEnv) -> None:
        """Top the campaign's practice and gold pairs up to the demo's numbers. A pool with too
        few clips far apart in true return gets fewer (with a warning), not a failed seed."""
        had_gold = campaign.pairs.filter(is_gold=True, is_practice=False).exists()
        for practice, wanted in ((True, demo.practice_pairs), (False, demo.gold_pairs)):
            kind = "practice" if practice else "gold"
            have = campaign.pairs.filter(is_gold=True, is_practice=practice).count()
            if have < wanted:
                try:
                    services.pairs_create_gold(
                        campaign=campaign, count=wanted - have, seed=0, practice=practice
                    )
                except services.NotEnoughSegments:
                    pass  # reported below, with the count actually reached
                have = campaign.pairs.filter(is_gold=True, is_practice=practice).count()
            if have < wanted:
                self.stdout.write(
                    self.style.WARNING(
                        f"campaign '{campaign.name}': only {have} of {wanted} {kind} pairs "
                        "(too few clips far enough apart in true return)"
                    )
                )
        # Set once, when the campaign first gets gold pairs, so a researcher's later change of
        # either rate survives a re-run.
        if not had_gold and campaign.pairs.filter(is_gold=True, is_practice=False).exists():
            Campaign.objects.filter(pk=campaign.pk).update(
                gold_rate=GOLD_RATE, repeat_rate=REPEAT_RATE
            )
