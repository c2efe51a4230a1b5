"""Roles are Django groups: annotator, researcher, admin (superusers count as admin)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from rest_framework.permissions import BasePermission

ANNOTATOR = "annotator"
RESEARCHER = "researcher"
ADMIN = "admin"
ROLES = (ANNOTATOR, RESEARCHER, ADMIN)
# Not a role: members' judgements are recorded as simulated (manage.py simulate_annotators).
SIMULATED = "simulated"


def ensure_groups() -> None:
    for name in ROLES:
        Group.objects.get_or_create(name=name)


def user_roles(user: AbstractBaseUser | AnonymousUser) -> frozenset[str]:
    """The caller's roles, cached on the user object for the request."""
    if not user.is_authenticated:
        return frozenset()
    cached = getattr(user, "_preflab_roles", None)
    if cached is None:
        names = set(user.groups.values_list("name", flat=True))  # type: ignore[attr-defined]
        if user.is_superuser:  # type: ignore[attr-defined]
            names.add(ADMIN)
        cached = frozenset(names & set(ROLES))
        user._preflab_roles = cached  # type: ignore[union-attr]
    return cached


def set_cached_roles(user: Any, names: set[str]) -> None:
    """Record roles already loaded with the user (see RoleAwareTokenAuthentication)."""
    if user.is_superuser:
        names = names | {ADMIN}
    user._preflab_roles = frozenset(names & set(ROLES))


def can_label(user: Any) -> bool:
    return bool(user_roles(user) & {ANNOTATOR, ADMIN})


def can_research(user: Any) -> bool:
    return bool(user_roles(user) & {RESEARCHER, ADMIN})


def is_admin(user: Any) -> bool:
    return ADMIN in user_roles(user)


class CanLabel(BasePermission):
    message = "Only annotators and admins can label pairs."

    def has_permission(self, request: Any, view: Any) -> bool:
        return can_label(request.user)


class CanResearch(BasePermission):
    message = "Only researchers and admins can read this."

    def has_permission(self, request: Any, view: Any) -> bool:
        return can_research(request.user)


class IsPrefLabAdmin(BasePermission):
    message = "Only admins can do this."

    def has_permission(self, request: Any, view: Any) -> bool:
        return is_admin(request.user)


class HasAnyRole(BasePermission):
    message = "Your account has no PrefLab role; ask an admin to add you to a group."

    def has_permission(self, request: Any, view: Any) -> bool:
        return bool(user_roles(request.user))
