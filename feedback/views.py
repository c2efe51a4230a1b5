"""Server-rendered pages and the clip endpoint. Pages are thin: data comes from the API."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from feedback.authentication import RoleAwareTokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from feedback import selectors
from feedback.models import Campaign, Segment
from feedback.ranges import ranged_file_response
from feedback.roles import can_label, user_roles


@login_required
def home(request: HttpRequest) -> HttpResponse:
    campaigns = selectors.campaigns_with_progress(user=request.user)
    return render(
        request,
        "feedback/home.html",
        {"campaigns": campaigns, "roles": sorted(user_roles(request.user)), "can_label": can_label(request.user)},
    )


@login_required
def label(request: HttpRequest, campaign_id: int) -> HttpResponse:
    if not can_label(request.user):
        raise PermissionDenied("Only annotators and admins can label pairs.")
    try:
        campaign = selectors.campaign_get_for_user(campaign_id=campaign_id, user=request.user)
    except Campaign.DoesNotExist:
        raise Http404(f"No campaign with id {campaign_id} is open to you.") from None
    return render(request, "feedback/label.html", {"campaign": campaign})


@require_GET
def clip(request: HttpRequest, segment_id: int) -> HttpResponse:
    """A segment's MP4, with Range support. Session or token auth; any PrefLab role."""
    user = request.user
    if not user.is_authenticated:
        try:
            authenticated = RoleAwareTokenAuthentication().authenticate(request)  # type: ignore[arg-type]
        except AuthenticationFailed as exc:
            return HttpResponse(str(exc.detail), status=401, content_type="text/plain")
        if authenticated is None:
            return HttpResponse("Log in or send an API token to fetch clips.", status=401,
                                content_type="text/plain")
        user = authenticated[0]
    if not user_roles(user):
        return HttpResponse("Your account has no PrefLab role.", status=403, content_type="text/plain")
    try:
        segment = selectors.segment_clip_for_user(segment_id=segment_id)
    except Segment.DoesNotExist:
        return HttpResponse(f"No rendered clip for segment {segment_id}.", status=404, content_type="text/plain")
    try:
        handle = segment.clip.open("rb")
        size = segment.clip.size
    except FileNotFoundError:
        # The row says ready but storage lost the file: a 404 that says so, not a 500.
        return HttpResponse(
            f"The clip file of segment {segment_id} is missing from storage.", status=404, content_type="text/plain"
        )
    return ranged_file_response(request, handle, size=size, content_type="video/mp4")
