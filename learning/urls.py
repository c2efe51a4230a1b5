from django.urls import path

from learning import views

app_name = "learning"

urlpatterns = [
    path("", views.index, name="index"),
    path("campaigns/<int:campaign_id>/", views.campaign_training, name="campaign"),
    path("runs/<int:run_id>/", views.run_detail, name="run"),
]
