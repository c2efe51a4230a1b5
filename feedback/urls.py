from django.urls import path

from feedback import views

app_name = "feedback"

urlpatterns = [
    path("", views.home, name="home"),
    path("campaigns/<int:campaign_id>/label/", views.label, name="label"),
    path("clips/<int:segment_id>.mp4", views.clip, name="clip"),
]
