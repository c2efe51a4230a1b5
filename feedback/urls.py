from django.urls import path

from feedback import research_views, views

app_name = "feedback"

urlpatterns = [
    path("", views.home, name="home"),
    path("campaigns/<int:campaign_id>/label/", views.label, name="label"),
    path("clips/<int:segment_id>.mp4", views.clip, name="clip"),
    path(
        "research/campaigns/<int:campaign_id>/",
        research_views.campaign_dashboard,
        name="research-campaign",
    ),
    path("research/datasets/", research_views.datasets, name="research-datasets"),
    path("research/pairs/<int:pair_id>/", research_views.pair_detail, name="research-pair"),
]
