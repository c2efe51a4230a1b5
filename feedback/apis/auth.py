"""Authentication endpoints: token in exchange for credentials, and who am I."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from feedback.apis.common import (
    ProblemSerializer,
)
from feedback.roles import user_roles

# --- auth ------------------------------------------------------------------------------------


class TokenApi(ObtainAuthToken):
    """Username and password in, API token out."""

    permission_classes = [AllowAny]
    throttle_classes = [AnonRateThrottle]
    throttle_scope = "anon"

    @extend_schema(
        request=inline_serializer(
            "TokenRequest",
            {"username": serializers.CharField(), "password": serializers.CharField()},
        ),
        responses={
            200: inline_serializer("TokenResponse", {"token": serializers.CharField()}),
            400: ProblemSerializer,
        },
        auth=[],
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)

    def get_throttles(self) -> list[Any]:
        # Throttling needs a cache-backed rate only in production; keep tests deterministic.
        return [] if settings.MODE != "production" else super().get_throttles()


class MeApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses=inline_serializer(
            "Me",
            {
                "id": serializers.IntegerField(),
                "username": serializers.CharField(),
                "roles": serializers.ListField(child=serializers.CharField()),
            },
        )
    )
    def get(self, request: Request) -> Response:
        user = request.user
        return Response(
            {"id": user.pk, "username": user.get_username(), "roles": sorted(user_roles(user))}
        )
