"""API token authentication that loads the caller's roles in the same query."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from django.db.models import Exists, OuterRef
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from feedback.roles import ROLES, SIMULATED, set_cached_roles


class RoleAwareTokenAuthentication(TokenAuthentication):
    """DRF's token auth, with one EXISTS per role folded into the token lookup: the hot
    labelling endpoints then need no separate query for the caller's groups."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        model = self.get_model()
        flags = {
            f"has_{role}": Exists(Group.objects.filter(user=OuterRef("user_id"), name=role)) for role in ROLES
        }
        # Not a role: whether the caller's judgements are recorded as simulated.
        flags["is_simulated"] = Exists(Group.objects.filter(user=OuterRef("user_id"), name=SIMULATED))
        try:
            token = model.objects.select_related("user").annotate(**flags).get(key=key)
        except model.DoesNotExist:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        user = token.user
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        set_cached_roles(user, {role for role in ROLES if getattr(token, f"has_{role}")})
        user._preflab_simulated = token.is_simulated
        return user, token
