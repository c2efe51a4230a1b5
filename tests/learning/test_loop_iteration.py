"""One loop iteration as a job, end to end on a real environment: simulated annotators label
Pendulum-v1 clips over HTTP → a worker trains the reward model → fine-tunes a policy against
it → rolls the policy out and renders its clips → the active selector queues new pairs; every
artifact carries its lineage, and a second iteration starts from the first one's policy."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command

from feedback import services as feedback_services
from feedback.models import Campaign, Judgement, Pair, PolicyVersion, Segment, Trajectory
from learning.core.configs import ConfigError
from learning.core.finetune import load_policy
from learning.loop import LoopRunConfig
from learning.models import ModelVersion, TrainingRun
from learning.rollout_import import rollouts_import
from tests.feedback.conftest import quick_campaign  # noqa: F401 - a fixture
from tests.learning.test_simulate_annotators import simulate
from tests.learning.test_training_runs import run_worker

TINY_LOOP: dict[str, Any] = {
    "net": {"hidden_sizes": [8], "ensemble_size": 2},
    "train": {"max_epochs": 3, "batch_size": 4, "device": "cpu", "held_out_fraction": 0.25},
    "finetune": {
        "algo": "ppo", "total_steps": 128, "n_envs": 2, "n_steps": 32, "batch_size": 32,
        "n_epochs": 1, "eval_episodes": 1, "report_every_steps": 64, "device": "cpu",
    },
    "loop": {"episodes": 1, "max_steps": 40, "pairs": 3, "render_size": 64},
}  # fmt: skip


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def pendulum_campaign(pairs: int = 12) -> Campaign:
    """Random-policy Pendulum-v1 episodes with real rendered clips, and random pairs of them."""
    rollouts_import(
        env_id="Pendulum-v1", policy="random", episodes=2, segment_length=20, seed=0,
        max_steps=100, width=64, height=64,
    )  # fmt: skip
    env = feedback_services.environment_get_or_create(env_id="Pendulum-v1")
    campaign = feedback_services.campaign_create(name="loop", env=env, segment_length=20)
    feedback_services.pairs_create_random(campaign=campaign, count=pairs, seed=0)
    return campaign


# ----------------------------------------------------------------------------- config


def test_loop_config_round_trips_and_names_bad_fields() -> None:
    config = LoopRunConfig.from_dict(TINY_LOOP)
    assert LoopRunConfig.from_dict(config.to_dict()) == config
    assert config.finetune.total_steps == 128 and config.loop.pairs == 3

    with pytest.raises(ConfigError, match="no section.*policy"):
        LoopRunConfig.from_dict({"policy": {}})
    with pytest.raises(ConfigError, match=r"config\.loop: selector must be one of"):
        LoopRunConfig.from_dict({"loop": {"selector": "best"}})
    with pytest.raises(ConfigError, match=r"config\.finetune\.total_steps must be int"):
        LoopRunConfig.from_dict({"finetune": {"total_steps": "many"}})
    with pytest.raises(ConfigError, match="needs config.net.ensemble_size ≥ 2"):
        LoopRunConfig.from_dict({"net": {"ensemble_size": 1}})
    with pytest.raises(ConfigError, match=r"config\.loop: reward must be one of"):
        LoopRunConfig.from_dict({"loop": {"reward": "vibes"}})
    with pytest.raises(ConfigError, match=r"config\.adversarial: lr must be > 0"):
        LoopRunConfig.from_dict({"adversarial": {"lr": 0.0}})


@pytest.mark.django_db
def test_only_admins_start_loop_iterations_and_bad_configs_are_refused(
    quick_campaign: Callable[..., Campaign], admin_user: Any, researcher: Any, annotator: Any,  # noqa: F811
    api_client_for: Callable[..., Any],
) -> None:  # fmt: skip
    campaign = quick_campaign(name="roles")
    body = {"campaign": campaign.pk, "kind": "loop", "config": TINY_LOOP}
    for user, expected in ((None, 401), (annotator, 403), (researcher, 403)):
        response = api_client_for(user).post("/api/v1/learning/runs/", body, format="json")
        assert response.status_code == expected, (user, response.content)
    bad = {**body, "config": {**TINY_LOOP, "loop": {"init": "teacher"}}}
    response = api_client_for(admin_user).post("/api/v1/learning/runs/", bad, format="json")
    assert response.status_code == 400
    assert "init must be one of" in response.content.decode()
    assert not TrainingRun.objects.exists()

    response = api_client_for(admin_user).post("/api/v1/learning/runs/", body, format="json")
    assert response.status_code == 201, response.content
    run = TrainingRun.objects.get()
    assert (run.kind, run.status, run.triggered_by) == ("loop", "queued", admin_user)
    assert run.config == LoopRunConfig.from_dict(TINY_LOOP).to_dict()


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_loop_iterations_close_the_loop_with_lineage(
    live_server: Any, admin_user: Any, api_client_for: Callable[..., Any]
) -> None:
    campaign = pendulum_campaign()
    simulate(live_server, campaign, "oracle", "--workers", "1", "--seed", "0")
    labelled = Judgement.objects.filter(pair__campaign=campaign).count()
    assert labelled == 12

    # Iteration 1, started by an admin through the API, carried out by a real worker process.
    client = api_client_for(admin_user)
    response = client.post(
        "/api/v1/learning/runs/",
        {"campaign": campaign.pk, "kind": "loop", "config": TINY_LOOP},
        format="json",
    )
    assert response.status_code == 201, response.content
    worker = run_worker()
    assert worker.returncode == 0, worker.stdout + worker.stderr
    first = TrainingRun.objects.get(pk=response.json()["id"])
    assert first.status == "succeeded", first.log
    assert first.progress == pytest.approx(1.0)

    reward = ModelVersion.objects.get(run=first, kind="reward_model")
    policy = ModelVersion.objects.get(run=first, kind="policy")
    assert reward.promoted and policy.promoted
    assert (policy.reward_model, policy.parent) == (reward, None)
    assert policy.metrics["reward_model_version"] == reward.pk
    assert policy.metrics["env_steps"] >= 128
    assert isinstance(policy.metrics["true_return_mean"], float)
    # The policy's checkpoint loads safely (weights_only) and acts in the env.
    with policy.artifact.open("rb") as handle:
        _model, config, env_id = load_policy(handle)
    assert (env_id, config.algo, config.total_steps) == ("Pendulum-v1", "ppo", 128)

    # Its rollouts are stored under its PolicyVersion, with rendered clips, ready to label...
    version = PolicyVersion.objects.get(model_version=policy)
    assert version.kind == "finetuned" and version.checkpoint.name
    assert version.config["lineage"]["reward_model_version"] == reward.pk
    trajectory = Trajectory.objects.get(policy=version)
    segments = list(trajectory.segments.all())
    assert len(segments) == 2  # 40 steps in segments of 20
    assert all(s.clip_status == Segment.ClipStatus.READY and s.clip.name for s in segments)
    # ...and the active selector queued new pairs stamped with the new reward model.
    chosen = Pair.objects.filter(campaign=campaign, selector="disagreement")
    assert chosen.count() == 3
    assert {p.model_version for p in chosen} == {str(reward.pk)}

    result = first.result
    assert result["iteration"] == 1
    assert result["labels_used"] == labelled
    assert result["reward_model_version"] == reward.pk
    assert result["policy_version"] == policy.pk
    assert result["trajectories_created"] == 1 and result["pairs_queued"] == 3
    assert result["wall_time_s"] > 0

    # Iteration 2 from the command line: the new policy is fine-tuned from the first.
    out = io.StringIO()
    call_command(
        "run_loop_iteration", "--campaign", str(campaign.pk), "--selector", "random",
        "--config", __import__("json").dumps(TINY_LOOP), stdout=out,
    )  # fmt: skip
    second = TrainingRun.objects.get(pk=int(out.getvalue().strip().splitlines()[-1]))
    worker = run_worker()
    assert worker.returncode == 0, worker.stdout + worker.stderr
    second.refresh_from_db()
    assert second.status == "succeeded", second.log
    child = ModelVersion.objects.get(run=second, kind="policy")
    assert child.parent == policy
    assert PolicyVersion.objects.get(model_version=child).parent == version
    assert second.result["iteration"] == 2
    assert second.result["parent_policy_version"] == policy.pk
    policy.refresh_from_db()
    assert child.promoted and not policy.promoted
    assert second.result["pairs_queued"] == 3
    assert Pair.objects.filter(campaign=campaign, selector="random").count() == 12 + 3


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_cancel_stops_the_iteration_and_a_retry_resumes_after_finished_stages(
    live_server: Any, admin_user: Any
) -> None:
    from learning import services
    from learning.loop import loop_iteration_run

    campaign = pendulum_campaign(pairs=8)
    simulate(live_server, campaign, "oracle", "--workers", "1", "--seed", "0")
    config = LoopRunConfig.from_dict(TINY_LOOP)

    # Cancelled while training: the first report sees the flag; nothing is registered.
    run = services.run_enqueue(
        campaign=campaign, config=config, triggered_by=admin_user, kind="loop"
    )
    run = services.run_claim(run_id=run.pk)
    assert run is not None
    services.run_cancel(run=run)
    assert loop_iteration_run(TrainingRun.objects.get(pk=run.pk)) is None
    assert not ModelVersion.objects.filter(run=run).exists()

    # A worker that died after the policy stage: the retry reuses what the run registered and
    # does not store the same rollout twice.
    run = services.run_enqueue(
        campaign=campaign, config=config, triggered_by=admin_user, kind="loop"
    )
    run = services.run_claim(run_id=run.pk)
    assert run is not None
    first = loop_iteration_run(run)
    again = loop_iteration_run(TrainingRun.objects.get(pk=run.pk))
    assert again == first
    assert ModelVersion.objects.filter(run=run).count() == 2  # one reward model, one policy
    assert Trajectory.objects.filter(policy__model_version=first).count() == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_iteration_can_clone_the_desirable_clips_and_train_against_gail(
    live_server: Any, admin_user: Any
) -> None:
    from learning import services
    from learning.loop import labelled_clips, loop_iteration_run

    campaign = pendulum_campaign()
    simulate(live_server, campaign, "oracle", "--workers", "1", "--seed", "0")
    raw = {
        **TINY_LOOP,
        "loop": {**TINY_LOOP["loop"], "init": "bc", "reward": "gail", "pairs": 0},
        "adversarial": {
            "steps_per_round": 64, "discriminator_updates": 2, "batch_size": 16,
            "policy_buffer": 256, "device": "cpu",
        },
    }  # fmt: skip
    config = LoopRunConfig.from_dict(raw)
    # The adversarial learner's kind and budget follow the loop's reward and the env steps.
    assert (config.adversarial.kind, config.adversarial.total_env_steps) == ("gail", 128)

    run = services.run_enqueue(
        campaign=campaign, config=config, triggered_by=admin_user, kind="loop"
    )
    run = services.run_claim(run_id=run.pk)
    assert run is not None
    desirable = labelled_clips(run, "desirable")
    assert desirable, "the oracle labels the best random clips desirable"
    policy = loop_iteration_run(run)
    assert policy is not None
    run.refresh_from_db()
    assert "Behaviour-cloned" in run.log and "GAIL from" in run.log
    assert (policy.metrics["reward"], policy.metrics["init"]) == ("gail", "bc")
    assert policy.metrics["env_steps"] >= 128
    assert run.result["pairs_queued"] == 0 and run.result["trajectories_created"] == 1
