from django.urls import path

from learning import apis

urlpatterns = [
    path("runs/", apis.RunCreateApi.as_view(), name="api-learning-runs"),
    path("runs/<int:run_id>/", apis.RunDetailApi.as_view(), name="api-learning-run"),
    path("runs/<int:run_id>/cancel/", apis.RunCancelApi.as_view(), name="api-learning-run-cancel"),
    path("model-versions/", apis.ModelVersionListApi.as_view(), name="api-learning-model-versions"),
    path(
        "model-versions/<int:version_id>/promote/",
        apis.ModelVersionPromoteApi.as_view(),
        name="api-learning-model-version-promote",
    ),
    path(
        "campaigns/<int:campaign_id>/retrain-rule/",
        apis.RetrainRuleApi.as_view(),
        name="api-learning-retrain-rule",
    ),
]
