from django.urls import path

from feedback import apis
from feedback.apis import datasets as dataset_apis

urlpatterns = [
    path("auth/token/", apis.TokenApi.as_view(), name="api-token"),
    path("me/", apis.MeApi.as_view(), name="api-me"),
    path("campaigns/", apis.CampaignListApi.as_view(), name="api-campaigns"),
    path("campaigns/<int:campaign_id>/", apis.CampaignDetailApi.as_view(), name="api-campaign"),
    path("campaigns/<int:campaign_id>/next/", apis.CampaignNextApi.as_view(), name="api-campaign-next"),
    path(
        "assignments/<int:assignment_id>/judgement/",
        apis.JudgementApi.as_view(),
        name="api-judgement",
    ),
    path("campaigns/<int:campaign_id>/stats/", apis.CampaignStatsApi.as_view(), name="api-campaign-stats"),
    path("campaigns/<int:campaign_id>/pairs/", apis.CampaignPairsApi.as_view(), name="api-campaign-pairs"),
    path(
        "campaigns/<int:campaign_id>/exclusions/",
        apis.CampaignExclusionApi.as_view(),
        name="api-campaign-exclusions",
    ),
    path("pairs/<int:pair_id>/", apis.PairDetailApi.as_view(), name="api-pair"),
    path("campaigns/<int:campaign_id>/practice/", apis.PracticeListApi.as_view(), name="api-practice"),
    path(
        "campaigns/<int:campaign_id>/practice/<int:pair_id>/",
        apis.PracticeCheckApi.as_view(),
        name="api-practice-check",
    ),
    path("datasets/", dataset_apis.DatasetListApi.as_view(), name="api-datasets"),
    path("datasets/<int:snapshot_id>/", dataset_apis.DatasetDetailApi.as_view(), name="api-dataset"),
    path(
        "datasets/<int:snapshot_id>/files/<str:name>",
        dataset_apis.DatasetFileApi.as_view(),
        name="api-dataset-file",
    ),
    path("trajectories/", apis.TrajectoryCreateApi.as_view(), name="api-trajectories"),
    path("trajectories/<int:trajectory_id>/", apis.TrajectoryDetailApi.as_view(), name="api-trajectory"),
]
