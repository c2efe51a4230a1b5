"""Training-run and model-version endpoints. Starting, cancelling and promoting are for
admins; researchers may watch runs. Training itself happens in a worker, never here."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback.apis.common import ProblemSerializer, _validated
from feedback.models import Campaign
from feedback.roles import CanResearch, IsPrefLabAdmin
from learning import selectors, services
from learning.core.configs import ConfigError
from learning.models import ModelVersion, RetrainRule, RunKind, TrainingRun
from learning.runner import RunConfig


def _run_json(run: TrainingRun) -> dict[str, Any]:
    return {
        "id": run.pk,
        "kind": run.kind,
        "campaign": run.campaign_id,
        "status": run.status,
        "progress": run.progress,
        "config": run.config,
        "dataset": {k: v for k, v in run.dataset.items() if k != "judgement_ids"},
        "metrics": run.metrics,
        "result": run.result,
        "device": run.device,
        "log": run.log,
        "attempts": run.attempts,
        "cancel_requested": run.cancel_requested,
        "triggered_by": run.triggered_by.get_username() if run.triggered_by else None,
        "heartbeat_at": run.heartbeat_at,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "model_versions": [v.pk for v in run.model_versions.all()],
    }


def _version_json(version: ModelVersion) -> dict[str, Any]:
    return {
        "id": version.pk,
        "run": version.run_id,
        "campaign": version.campaign_id,
        "kind": version.kind,
        "metrics": version.metrics,
        "promoted": version.promoted,
        "promoted_at": version.promoted_at,
        "created_at": version.created_at,
        "lineage": {
            "parent": version.parent_id,
            "reward_model": version.reward_model_id,
            "policy": version.policy_id,
        },
    }


def _run(run_id: int) -> TrainingRun:
    try:
        return selectors.training_run_get(run_id=run_id)
    except TrainingRun.DoesNotExist:
        raise exceptions.NotFound(f"No training run with id {run_id}.") from None


class RunCreateApi(APIView):
    """Queue a training run for a campaign. ``kind`` is ``reward_model`` (the default) or
    ``loop`` (one loop iteration: reward model → policy → rollouts → pairs). ``config``
    overrides fields of ``RewardNetConfig`` (``net``) and ``RewardTrainingConfig`` (``train``),
    and for a loop also ``FinetuneConfig`` (``finetune``) and ``LoopSettings`` (``loop``); the
    rest take defaults. A ``db_worker`` (or RQ worker) picks the run up."""

    permission_classes = [IsAuthenticated, IsPrefLabAdmin]

    class RunInputSerializer(serializers.Serializer):
        campaign = serializers.IntegerField(min_value=1)
        kind = serializers.ChoiceField(choices=RunKind.values, default=RunKind.REWARD_MODEL)
        config = serializers.DictField(required=False, default=dict)

    @extend_schema(
        request=RunInputSerializer,
        responses={
            201: OpenApiResponse(description="The queued run."),
            400: ProblemSerializer,
            403: ProblemSerializer,
        },
    )
    def post(self, request: Request) -> Response:
        data = _validated(self.RunInputSerializer, request)
        try:
            campaign = Campaign.objects.get(pk=data["campaign"])
        except Campaign.DoesNotExist:
            raise exceptions.ValidationError(
                {"campaign": [f"No campaign with id {data['campaign']}."]}
            ) from None
        config: Any
        try:
            if data["kind"] == RunKind.LOOP:
                from learning.loop import LoopRunConfig  # loads SB3: only for loop runs

                config = LoopRunConfig.from_dict(data["config"])
            else:
                config = RunConfig.from_dict(data["config"])
        except ConfigError as exc:
            raise exceptions.ValidationError({"config": [str(exc)]}) from None
        run = services.run_enqueue(
            campaign=campaign, config=config, triggered_by=request.user, kind=data["kind"]
        )
        return Response(
            _run_json(selectors.training_run_get(run_id=run.pk)), status=status.HTTP_201_CREATED
        )


class RunDetailApi(APIView):
    """A run's status, progress, metric series and log. Researchers and admins."""

    permission_classes = [IsAuthenticated, CanResearch]

    @extend_schema(
        responses={
            200: OpenApiResponse(description="The run."),
            403: ProblemSerializer,
            404: ProblemSerializer,
        }
    )
    def get(self, request: Request, run_id: int) -> Response:
        return Response(_run_json(_run(run_id)))


class RunCancelApi(APIView):
    """Cancel a queued run, or ask a running one to stop at its next report. Admins."""

    permission_classes = [IsAuthenticated, IsPrefLabAdmin]

    @extend_schema(
        request=None,
        responses={
            200: OpenApiResponse(description="The run."),
            403: ProblemSerializer,
            404: ProblemSerializer,
            409: ProblemSerializer,
        },
    )
    def post(self, request: Request, run_id: int) -> Response:
        try:
            run = services.run_cancel(run=_run(run_id))
        except services.RunNotCancellable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(_run_json(run))


class ModelVersionListApi(APIView):
    """Model versions, newest first, optionally of one campaign (``?campaign=ID``). Admins."""

    permission_classes = [IsAuthenticated, IsPrefLabAdmin]

    @extend_schema(
        responses={
            200: OpenApiResponse(description="Versions."),
            400: ProblemSerializer,
            403: ProblemSerializer,
        }
    )
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("campaign")
        campaign_id: int | None = None
        if raw is not None:
            if not raw.isdigit():
                raise exceptions.ValidationError(
                    {"campaign": ["campaign must be a campaign id (an integer)."]}
                )
            campaign_id = int(raw)
        return Response(
            [_version_json(v) for v in selectors.model_versions_for(campaign_id=campaign_id)]
        )


class ModelVersionPromoteApi(APIView):
    """Make this version its campaign's promoted model (promoting an older one rolls back). Admins."""

    permission_classes = [IsAuthenticated, IsPrefLabAdmin]

    @extend_schema(
        request=None,
        responses={
            200: OpenApiResponse(description="The version."),
            403: ProblemSerializer,
            404: ProblemSerializer,
        },
    )
    def post(self, request: Request, version_id: int) -> Response:
        try:
            version = ModelVersion.objects.get(pk=version_id)
        except ModelVersion.DoesNotExist:
            raise exceptions.NotFound(f"No model version with id {version_id}.") from None
        return Response(_version_json(services.model_version_promote(version=version)))


class RetrainRuleApi(APIView):
    """A campaign's "retrain after N new judgements" rule. ``GET`` reads it (404 when there is
    none); ``PUT {every_judgements, config?, enabled?}`` creates or replaces it, ``config``
    being a reward-model run's (``net``/``train``). ``manage.py apply_retrain_rules`` fires
    due rules. Admins."""

    permission_classes = [IsAuthenticated, IsPrefLabAdmin]

    class RuleInputSerializer(serializers.Serializer):
        every_judgements = serializers.IntegerField(min_value=1)
        config = serializers.DictField(required=False, default=dict)
        enabled = serializers.BooleanField(required=False, default=True)

    @staticmethod
    def _campaign(campaign_id: int) -> Campaign:
        try:
            return Campaign.objects.get(pk=campaign_id)
        except Campaign.DoesNotExist:
            raise exceptions.NotFound(f"No campaign with id {campaign_id}.") from None

    @staticmethod
    def _json(rule: RetrainRule) -> dict[str, Any]:
        return {
            "campaign": rule.campaign_id,
            "every_judgements": rule.every_judgements,
            "config": rule.config,
            "enabled": rule.enabled,
            "last_judgement_count": rule.last_judgement_count,
            "last_run": rule.last_run_id,
            "updated_at": rule.updated_at,
        }

    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = self._campaign(campaign_id)
        try:
            rule = RetrainRule.objects.get(campaign=campaign)
        except RetrainRule.DoesNotExist:
            raise exceptions.NotFound(f"Campaign {campaign_id} has no retrain rule.") from None
        return Response(self._json(rule))

    @extend_schema(
        request=RuleInputSerializer, responses={200: OpenApiResponse(), 400: ProblemSerializer}
    )
    def put(self, request: Request, campaign_id: int) -> Response:
        campaign = self._campaign(campaign_id)
        data = _validated(self.RuleInputSerializer, request)
        try:
            config = RunConfig.from_dict(data["config"])
        except ConfigError as exc:
            raise exceptions.ValidationError({"config": [str(exc)]}) from None
        rule = services.retrain_rule_set(
            campaign=campaign,
            every_judgements=data["every_judgements"],
            config=config,
            enabled=data["enabled"],
            updated_by=request.user,
        )
        return Response(self._json(rule))
