"""The annotation protocol, version 1: a public REST API (see /api/schema/).

Views are thin adapters: parse and validate input, call one service or selector, shape
the output. Every error body has a ``detail`` string that names the problem.
"""

from feedback.apis.annotation import (
    CampaignDetailApi,
    CampaignListApi,
    CampaignNextApi,
    JudgementApi,
)
from feedback.apis.auth import MeApi, TokenApi
from feedback.apis.common import exception_handler
from feedback.apis.practice import PracticeCheckApi, PracticeListApi
from feedback.apis.research import (
    CampaignExclusionApi,
    CampaignPairsApi,
    CampaignStatsApi,
    PairDetailApi,
)
from feedback.apis.trajectories import TrajectoryCreateApi, TrajectoryDetailApi

__all__ = [
    "CampaignDetailApi",
    "CampaignExclusionApi",
    "CampaignListApi",
    "CampaignNextApi",
    "CampaignPairsApi",
    "CampaignStatsApi",
    "JudgementApi",
    "MeApi",
    "PairDetailApi",
    "PracticeCheckApi",
    "PracticeListApi",
    "TokenApi",
    "TrajectoryCreateApi",
    "TrajectoryDetailApi",
    "exception_handler",
]
