"""API token authentication that loads the caller and their roles in one query."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from feedback.roles import ROLES, SIMULATED, set_cached_roles


@lru_cache(maxsize=1)
def _token_user_sql() -> tuple[str, tuple[str, ...]]:
    """The lookup, written once: profiled under load, compiling the equivalent ORM query
    (token → user, one EXISTS per role) cost more CPU than the rest of the labelling view."""
    user_model = get_user_model()
    qn = connection.ops.quote_name
    user_table = qn(user_model._meta.db_table)
    columns = tuple(field.attname for field in user_model._meta.concrete_fields)
    through = user_model.groups.through._meta  # type: ignore[attr-defined]
    sql = (
        f"SELECT {', '.join(f'u.{qn(field.column)}' for field in user_model._meta.concrete_fields)}, g.{qn('name')} "
        f"FROM {qn(Token._meta.db_table)} t "
        f"JOIN {user_table} u ON u.{qn(user_model._meta.pk.column)} = t.{qn('user_id')} "
        f"LEFT JOIN {qn(through.db_table)} ug ON ug.{qn('user_id')} = u.{qn(user_model._meta.pk.column)} "
        f"LEFT JOIN {qn(Group._meta.db_table)} g ON g.{qn('id')} = ug.{qn('group_id')} "
        f"WHERE t.{qn('key')} = %s"
    )
    return sql, columns


def token_user(key: str) -> Any | None:
    """The active-or-not user owning token ``key`` with roles and the simulated flag cached
    on it (one row per group the user is in), or None for an unknown key."""
    from feedback.services.annotation_sql import hot_cursor

    sql, columns = _token_user_sql()
    with hot_cursor() as cursor:
        cursor.execute(sql, [key])
        rows = cursor.fetchall()
    if not rows:
        return None
    user = get_user_model().from_db(connection.alias, list(columns), rows[0][: len(columns)])
    groups = {row[-1] for row in rows if row[-1] is not None}
    set_cached_roles(user, groups & set(ROLES))
    user._preflab_simulated = SIMULATED in groups
    return user


class RoleAwareTokenAuthentication(TokenAuthentication):
    """DRF's token auth, with the caller's groups loaded in the token lookup: the hot
    labelling endpoints then need no separate query for roles."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        user = token_user(key)
        if user is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        # request.auth gets the token unsaved-but-equal (same key and user), not re-read.
        return user, Token(key=key, user=user)
