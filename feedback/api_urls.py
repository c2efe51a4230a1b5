from django.urls import path

from feedback import apis

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
    path("trajectories/", apis.TrajectoryCreateApi.as_view(), name="api-trajectories"),
    path("trajectories/<int:trajectory_id>/", apis.TrajectoryDetailApi.as_view(), name="api-trajectory"),
]
