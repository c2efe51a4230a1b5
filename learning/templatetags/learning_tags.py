"""Template helpers for the training pages and the site header."""

from __future__ import annotations

from typing import Any

from django import template

from feedback.roles import is_admin

register = template.Library()


@register.filter
def preflab_admin(user: Any) -> bool:
    """``{% if user|preflab_admin %}``: the user has the admin role (cached per request)."""
    return bool(user is not None and user.is_authenticated and is_admin(user))
