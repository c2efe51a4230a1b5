"""The annotation protocol, v1: who may call what, what comes back, and what bad input does.

Every endpoint is exercised for every member of the cast (anonymous, annotator, other
annotator, researcher, admin, outsider with no PrefLab group). Every refusal carries a
``detail`` naming the problem, and a refused write leaves no row and no file behind.
"""

from __future__ import annotations

import io
import json
import random
from datetime import timedelta
from typing import Any, Callable

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from rest_framework.authtoken.models import Token

from feedback import services
from feedback.models import Assignment, Campaign, Judgement, Pair, Segment, Trajectory
from feedback.services import annotation
from feedback.tasks import render_trajectory_clips
from tests.feedback.conftest import VALID_ANSWER, media_files, npz_file, row_counts, trajectory_arrays

ROLES = ["anonymous", "annotator", "other_annotator", "researcher", "admin_user", "outsider"]


def _user(request: pytest.FixtureRequest, role: str) -> Any:
    return None if role == "anonymous" else request.getfixturevalue(role)


def _next_url(campaign: Campaign | int) -> str:
    return f"/api/v1/campaigns/{getattr(campaign, 'pk', campaign)}/next/"


def _judgement_url(assignment_id: int) -> str:
    return f"/api/v1/assignments/{assignment_id}/judgement/"


# --- the role matrix ---------------------------------------------------------------------------

# (endpoint, expected status per role). The judgement is posted to a lease held by `annotator`.
MATRIX: dict[str, dict[str, int]] = {
    "me": dict(anonymous=401, annotator=200, other_annotator=200, researcher=200, admin_user=200,
               outsider=200),
    "campaign-list": dict(anonymous=401, annotator=200, other_annotator=200, researcher=200,
                          admin_user=200, outsider=403),
    "campaign-detail": dict(anonymous=401, annotator=200, other_annotator=200, researcher=200,
                            admin_user=200, outsider=403),
    "next": dict(anonymous=401, annotator=200, other_annotator=200, researcher=403, admin_user=200,
                 outsider=403),
    "judgement": dict(anonymous=401, annotator=201, other_annotator=403, researcher=403,
                      admin_user=403, outsider=403),
    "trajectory-create": dict(anonymous=401, annotator=403, other_annotator=403, researcher=403,
                              admin_user=201, outsider=403),
    "trajectory-detail": dict(anonymous=401, annotator=403, other_annotator=403, researcher=200,
                              admin_user=200, outsider=403),
    "clip": dict(anonymous=401, annotator=200, other_annotator=200, researcher=200, admin_user=200,
                 outsider=403),
    "schema": dict(anonymous=200, annotator=200, other_annotator=200, researcher=200,
                   admin_user=200, outsider=200),
}


@pytest.fixture
def world(quick_campaign: Callable[..., Campaign], annotator: Any) -> dict[str, Any]:
    campaign = quick_campaign()
    assignment = services.assignment_lease_next(campaign=campaign, annotator=annotator)
    assert assignment is not None
    segment = Segment.objects.filter(clip_status=Segment.ClipStatus.READY).first()
    return {"campaign": campaign, "assignment": assignment, "segment": segment,
            "trajectory": segment.trajectory}


def _call(client: Any, endpoint: str, world: dict[str, Any]) -> Any:
    campaign, assignment = world["campaign"], world["assignment"]
    if endpoint == "me":
        return client.get("/api/v1/me/")
    if endpoint == "campaign-list":
        return client.get("/api/v1/campaigns/")
    if endpoint == "campaign-detail":
        return client.get(f"/api/v1/campaigns/{campaign.pk}/")
    if endpoint == "next":
        return client.post(_next_url(campaign), {}, format="json")
    if endpoint == "judgement":
        return client.post(_judgement_url(assignment.pk), VALID_ANSWER, format="json")
    if endpoint == "trajectory-create":
        return client.post("/api/v1/trajectories/", {
            "file": npz_file(**trajectory_arrays(20)), "env_id": "Toy-v0", "segment_length": 10,
        }, format="multipart")
    if endpoint == "trajectory-detail":
        return client.get(f"/api/v1/trajectories/{world['trajectory'].pk}/")
    if endpoint == "clip":
        return client.get(f"/clips/{world['segment'].pk}.mp4")
    if endpoint == "schema":
        return client.get("/api/schema/?format=json")
    raise AssertionError(endpoint)


@pytest.mark.parametrize(
    ("endpoint", "role", "expected"),
    [(endpoint, role, codes[role]) for endpoint, codes in MATRIX.items() for role in ROLES],
    ids=[f"{endpoint}-{role}" for endpoint in MATRIX for role in ROLES],
)
def test_every_endpoint_answers_every_role_as_specified(
    request: pytest.FixtureRequest, api_client_for: Callable[..., Any], world: dict[str, Any],
    endpoint: str, role: str, expected: int,
) -> None:
    response = _call(api_client_for(_user(request, role)), endpoint, world)
    if response.streaming:
        b"".join(response.streaming_content)  # closes the clip file
    assert response.status_code == expected, response.content[:300]
    if expected >= 400 and endpoint != "clip":
        assert response.json()["detail"]  # every refusal says why
    if expected >= 400 and endpoint == "clip":
        assert response.content  # plain-text reason


@pytest.mark.parametrize("role", [role for role in ROLES if role != "anonymous"])
def test_token_endpoint_trades_a_password_for_that_users_token(
    request: pytest.FixtureRequest, api_client_for: Callable[..., Any], role: str
) -> None:
    user = _user(request, role)
    response = api_client_for(None).post(
        "/api/v1/auth/token/", {"username": user.username, "password": f"{user.username}-pass-123"},
        format="json",
    )
    assert response.status_code == 200
    token = response.json()["token"]
    assert token == Token.objects.get(user=user).key
    me = api_client_for(None)
    me.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert me.get("/api/v1/me/").json()["username"] == user.username


def test_token_endpoint_refuses_a_wrong_password(annotator: Any, api_client_for: Callable[..., Any]) -> None:
    response = api_client_for(None).post(
        "/api/v1/auth/token/", {"username": annotator.username, "password": "wrong"}, format="json"
    )
    assert response.status_code == 400
    assert "Unable to log in" in response.json()["detail"]
    assert not Token.objects.exists()


def test_a_bad_token_is_refused_with_a_reason(api_client_for: Callable[..., Any], db: Any) -> None:
    client = api_client_for(None)
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get("/api/v1/me/")
    assert response.status_code == 401
    assert "Invalid token" in response.json()["detail"]


def test_me_lists_the_callers_roles(
    api_client_for: Callable[..., Any], annotator: Any, researcher: Any, admin_user: Any, outsider: Any
) -> None:
    roles = {user.username: api_client_for(user).get("/api/v1/me/").json()["roles"]
             for user in (annotator, researcher, admin_user, outsider)}
    assert roles == {"annie": ["annotator"], "rita": ["researcher"], "ada": ["admin"], "olga": []}


def test_a_superuser_without_groups_counts_as_admin(api_client_for: Callable[..., Any], db: Any) -> None:
    from django.contrib.auth.models import User

    root = User.objects.create_superuser("root", password="root-pass-123")
    client = api_client_for(root)
    assert client.get("/api/v1/me/").json()["roles"] == ["admin"]
    response = client.post("/api/v1/trajectories/", {
        "file": npz_file(**trajectory_arrays(20)), "env_id": "Toy-v0", "segment_length": 10,
    }, format="multipart")
    assert response.status_code == 201


def test_schema_documents_every_v1_endpoint(api_client_for: Callable[..., Any], db: Any) -> None:
    schema = json.loads(api_client_for(None).get("/api/schema/?format=json").content)
    # The learning app's endpoints are pinned in tests/learning/test_training_runs.py.
    assert {p for p in schema["paths"] if not p.startswith("/api/v1/learning/")} == {
        "/api/v1/auth/token/", "/api/v1/me/", "/api/v1/campaigns/", "/api/v1/campaigns/{campaign_id}/",
        "/api/v1/campaigns/{campaign_id}/next/", "/api/v1/assignments/{assignment_id}/judgement/",
        "/api/v1/trajectories/", "/api/v1/trajectories/{trajectory_id}/",
        "/api/v1/campaigns/{campaign_id}/stats/", "/api/v1/campaigns/{campaign_id}/pairs/",
        "/api/v1/campaigns/{campaign_id}/exclusions/", "/api/v1/pairs/{pair_id}/",
        "/api/v1/campaigns/{campaign_id}/practice/", "/api/v1/campaigns/{campaign_id}/practice/{pair_id}/",
        "/api/v1/datasets/", "/api/v1/datasets/{snapshot_id}/", "/api/v1/datasets/{snapshot_id}/files/{name}",
    }
    judgement = schema["paths"]["/api/v1/assignments/{assignment_id}/judgement/"]["post"]
    assert {"200", "201", "400", "403", "404", "409", "410"} <= set(judgement["responses"])
    assert "204" in schema["paths"]["/api/v1/campaigns/{campaign_id}/next/"]["post"]["responses"]


# --- campaigns ------------------------------------------------------------------------------------


def test_campaign_list_shows_progress_and_only_the_callers_own_labels(
    quick_campaign: Callable[..., Campaign], annotator: Any, other_annotator: Any,
    api_client_for: Callable[..., Any], lease_for: Callable[..., Any],
) -> None:
    campaign = quick_campaign(pairs=4, overlap=2)
    for user in (annotator, other_annotator):
        lease = lease_for(user, campaign)
        api_client_for(user).post(_judgement_url(lease["assignment_id"]), VALID_ANSWER, format="json")
    lease = lease_for(annotator, campaign)
    api_client_for(annotator).post(_judgement_url(lease["assignment_id"]), VALID_ANSWER, format="json")

    [row] = api_client_for(annotator).get("/api/v1/campaigns/").json()
    assert row == {
        "id": campaign.pk, "name": "quick", "env_id": "Toy-v0", "instructions": "", "status": "active",
        "segment_length": 10, "overlap": 2, "pair_count": 4, "labels_wanted": 8, "label_count": 3,
        "my_label_count": 2,
    }
    assert api_client_for(other_annotator).get("/api/v1/campaigns/").json()[0]["my_label_count"] == 1


def test_paused_campaigns_are_hidden_from_annotators_but_not_from_researchers(
    quick_campaign: Callable[..., Campaign], annotator: Any, researcher: Any, api_client_for: Callable[..., Any],
) -> None:
    campaign = quick_campaign(pairs=1)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.PAUSED)
    annotator_client, researcher_client = api_client_for(annotator), api_client_for(researcher)
    assert annotator_client.get("/api/v1/campaigns/").json() == []
    response = annotator_client.get(f"/api/v1/campaigns/{campaign.pk}/")
    assert response.status_code == 404
    assert str(campaign.pk) in response.json()["detail"]
    assert [row["status"] for row in researcher_client.get("/api/v1/campaigns/").json()] == ["paused"]
    assert researcher_client.get(f"/api/v1/campaigns/{campaign.pk}/").status_code == 200


def test_unknown_campaign_is_404_naming_the_id(annotator: Any, api_client_for: Callable[..., Any]) -> None:
    client = api_client_for(annotator)
    for response in (client.get("/api/v1/campaigns/987/"), client.post(_next_url(987), {}, format="json")):
        assert response.status_code == 404
        assert "987" in response.json()["detail"]


# --- leasing -------------------------------------------------------------------------------------


def test_next_leases_a_pair_with_both_clips_described(
    quick_campaign: Callable[..., Campaign], annotator: Any, api_client_for: Callable[..., Any],
) -> None:
    campaign = quick_campaign()
    before = timezone.now()
    response = api_client_for(annotator).post(_next_url(campaign), {}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"assignment_id", "campaign_id", "expires_at", "left", "right"}
    assignment = Assignment.objects.select_related("pair").get(pk=body["assignment_id"])
    assert assignment.annotator == annotator and assignment.completed_at is None
    assert body["campaign_id"] == campaign.pk
    expires = timezone.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert before + timedelta(seconds=campaign.lease_seconds) <= expires <= timezone.now() + timedelta(
        seconds=campaign.lease_seconds)
    pair = assignment.pair
    expected_left, expected_right = (
        (pair.segment_a, pair.segment_b) if assignment.left_is_a else (pair.segment_b, pair.segment_a)
    )
    for side, segment in (("left", expected_left), ("right", expected_right)):
        # Only what the page needs: never the true return, which is for research only.
        assert body[side] == {
            "segment_id": segment.pk,
            "clip_url": f"http://testserver/clips/{segment.pk}.mp4",
            "length": 10,
            "fps": 10,
        }
    clip = api_client_for(annotator).get(body["left"]["clip_url"])
    assert clip.status_code == 200 and clip["Content-Type"] == "video/mp4"
    b"".join(clip.streaming_content)


def test_left_right_order_is_randomised_per_lease_and_drawn_from_the_services_rng(
    quick_campaign: Callable[..., Campaign], annotator: Any, monkeypatch: pytest.MonkeyPatch,
    api_client_for: Callable[..., Any],
) -> None:
    campaign = quick_campaign(n_trajectories=4, pairs=12)
    # The service draws from SystemRandom; seed it so the sequence of orders is known.
    served = random.Random(3)
    monkeypatch.setattr(annotation.random, "SystemRandom", lambda: served)
    seeded = random.Random(3)
    client = api_client_for(annotator)
    orders = []
    for _ in range(12):
        body = client.post(_next_url(campaign), {}, format="json").json()
        assignment = Assignment.objects.select_related("pair").get(pk=body["assignment_id"])
        # The recorded order is the order served.
        assert body["left"]["segment_id"] == (
            assignment.pair.segment_a_id if assignment.left_is_a else assignment.pair.segment_b_id
        )
        assert assignment.left_is_a == (seeded.random() < 0.5)
        orders.append(assignment.left_is_a)
        client.post(_judgement_url(body["assignment_id"]), VALID_ANSWER, format="json")
    assert set(orders) == {True, False}


def test_an_unanswered_lease_is_handed_back_renewed_on_the_next_call(
    quick_campaign: Callable[..., Campaign], annotator: Any, api_client_for: Callable[..., Any],
) -> None:
    campaign = quick_campaign()
    client = api_client_for(annotator)
    first = client.post(_next_url(campaign), {}, format="json").json()
    again = client.post(_next_url(campaign), {}, format="json").json()
    assert again["assignment_id"] == first["assignment_id"]
    assert again["left"] == first["left"] and again["right"] == first["right"]
    assert again["expires_at"] >= first["expires_at"]
    assert Assignment.objects.count() == 1


def test_exclude_gives_a_different_pair_for_prefetch(
    quick_campaign: Callable[..., Campaign], annotator: Any, api_client_for: Callable[..., Any],
) -> None:
    campaign = quick_campaign()
    client = api_client_for(annotator)
    shown = client.post(_next_url(campaign), {}, format="json").json()
    prefetched = client.post(_next_url(campaign), {"exclude": [shown["assignment_id"]]}, format="json").json()
    assert prefetched["assignment_id"] != shown["assignment_id"]
    pairs = Assignment.objects.filter(pk__in=[shown["assignment_id"], prefetched["assignment_id"]])
    assert len({assignment.pair_id for assignment in pairs}) == 2
    # Without exclude the oldest open lease (the one on screen) comes back first.
    assert client.post(_next_url(campaign), {}, format="json").json()["assignment_id"] == shown["assignment_id"]


def test_a_pair_is_never_leased_twice_to_the_same_annotator_and_204_ends_the_queue(
    quick_campaign: Callable[..., Campaign], annotator: Any, api_client_for: Callable[..., Any],
) -> None:
    campaign = quick_campaign(pairs=5, overlap=2)
    client = api_client_for(annotator)
    seen = []
    while (response := client.post(_next_url(campaign), {}, format="json")).status_code == 200:
        body = response.json()
        seen.append(Assignment.objects.get(pk=body["assignment_id"]).pair_id)
        assert client.post(_judgement_url(body["assignment_id"]), VALID_ANSWER, format="json").status_code == 201
        assert len(seen) <= 5
    assert response.status_code == 204 and response.content == b""
    assert sorted(seen) == sorted(campaign.pairs.values_list("id", flat=True))


def test_a_pair_held_by_another_annotator_is_not_leased_beyond_its_overlap(
    quick_campaign: Callable[..., Campaign], annotator: Any, other_annotator: Any,
    lease_for: Callable[..., Any], api_client_for: Callable[..., Any],
) -> None:
    campaign = quick_campaign(pairs=1, overlap=1)
    lease_for(other_annotator, campaign)
    assert api_client_for(annotator).post(_next_url(campaign), {}, format="json").status_code == 204


def test_next_on_a_paused_campaign_is_409(
    quick_campaign: Callable[..., Campaign], admin_user: Any, api_client_for: Callable[..., Any],
) -> None:
    campaign = quick_campaign(pairs=1)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.PAUSED)
    response = api_client_for(admin_user).post(_next_url(campaign), {}, format="json")
    assert response.status_code == 409
    assert "paused" in response.json()["detail"]
    assert not Assignment.objects.exists()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"exclude": "3"}, "exclude"),
        ({"exclude": [0]}, "exclude"),
        ({"exclude": list(range(1, 30))}, "exclude"),
        ([1, 2], "JSON object"),
    ],
    ids=["exclude-not-a-list", "exclude-id-zero", "exclude-too-long", "body-is-a-list"],
)
def test_next_refuses_bad_input_naming_the_problem(
    quick_campaign: Callable[..., Campaign], annotator: Any, api_client_for: Callable[..., Any],
    body: Any, problem: str,
) -> None:
    campaign = quick_campaign(pairs=1)
    response = api_client_for(annotator).post(_next_url(campaign), body, format="json")
    assert response.status_code == 400
    assert problem in response.json()["detail"]
    assert not Assignment.objects.exists()


# --- judgements ----------------------------------------------------------------------------------


def _lease_with_order(campaign: Campaign, annotator: Any, *, left_is_a: bool) -> Assignment:
    assignment = services.assignment_lease_next(campaign=campaign, annotator=annotator)
    assert assignment is not None
    Assignment.objects.filter(pk=assignment.pk).update(left_is_a=left_is_a)
    assignment.refresh_from_db()
    return assignment


@pytest.mark.parametrize(
    ("left_is_a", "preference", "stored"),
    [(True, "left", "a"), (True, "right", "b"), (False, "left", "b"), (False, "right", "a"),
     (False, "equal", "equal"), (False, "cant_tell", "cant_tell")],
)
def test_judgement_is_stored_in_the_pairs_a_b_terms(
    quick_campaign: Callable[..., Campaign], annotator: Any, api_client_for: Callable[..., Any],
    left_is_a: bool, preference: str, stored: str,
) -> None:
    assignment = _lease_with_order(quick_campaign(pairs=1), annotator, left_is_a=left_is_a)
    answer = {"preference": preference, "left_desirability": "desirable",
              "right_desirability": "undesirable", "confidence": 0.75, "elapsed_ms": 4200}
    response = api_client_for(annotator).post(_judgement_url(assignment.pk), answer, format="json")
    assert response.status_code == 201
    body = response.json()
    # The response speaks the annotator's screen terms, the row the pair's A/B terms.
    assert {key: body[key] for key in answer} == answer
    assert body["assignment_id"] == assignment.pk and body["pair_id"] == assignment.pair_id
    judgement = Judgement.objects.get()
    assert judgement.preference == stored
    assert (judgement.desirability_a, judgement.desirability_b) == (
        ("desirable", "undesirable") if left_is_a else ("undesirable", "desirable")
    )
    assert judgement.left_is_a is left_is_a
    assert (judgement.confidence, judgement.elapsed_ms, judgement.annotator) == (0.75, 4200, annotator)
    assignment.refresh_from_db()
    assert assignment.completed_at is not None


def test_an_identical_resubmit_is_200_with_the_same_body_and_no_new_row(
    quick_campaign: Callable[..., Campaign], annotator: Any, api_client_for: Callable[..., Any],
) -> None:
    assignment = _lease_with_order(quick_campaign(pairs=1), annotator, left_is_a=False)
    client = api_client_for(annotator)
    answer = {**VALID_ANSWER, "confidence": 0.5}
    first = client.post(_judgement_url(assignment.pk), answer, format="json")
    again = client.post(_judgement_url(assignment.pk), answer, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert Judgement.objects.count() == 1


@pytest.mark.parametrize(
    "change",
    [{"preference": "right"}, {"left_desirability": "unsure"}, {"confidence": 0.9}],
    ids=["preference", "desirability", "confidence"],
)
def test_a_conflicting_resubmit_is_409_and_the_stored_judgement_is_unchanged(
    quick_campaign: Callable[..., Campaign], annotator: Any, api_client_for: Callable[..., Any],
    change: dict[str, Any],
) -> None:
    assignment = _lease_with_order(quick_campaign(pairs=1), annotator, left_is_a=True)
    client = api_client_for(annotator)
    first = client.post(_judgement_url(assignment.pk), {**VALID_ANSWER, "confidence": 0.5}, format="json")
    stored = Judgement.objects.values().get()
    response = client.post(_judgement_url(assignment.pk), {**VALID_ANSWER, "confidence": 0.5, **change},
                           format="json")
    assert response.status_code == 409
    assert "already recorded" in response.json()["detail"]
    assert response.json()["existing"] == first.json()
    assert Judgement.objects.values().get() == stored


def test_judging_someone_elses_assignment_is_403(
    quick_campaign: Callable[..., Campaign], annotator: Any, other_annotator: Any,
    api_client_for: Callable[..., Any],
) -> None:
    assignment = _lease_with_order(quick_campaign(pairs=2), annotator, left_is_a=True)
    response = api_client_for(other_annotator).post(_judgement_url(assignment.pk), VALID_ANSWER, format="json")
    assert response.status_code == 403
    assert "another annotator" in response.json()["detail"]
    assert not Judgement.objects.exists()
    assert Assignment.objects.get().completed_at is None


def test_judging_an_unknown_assignment_is_404_naming_the_id(
    annotator: Any, api_client_for: Callable[..., Any]
) -> None:
    response = api_client_for(annotator).post(_judgement_url(4242), VALID_ANSWER, format="json")
    assert response.status_code == 404
    assert "4242" in response.json()["detail"]


def _expire(assignment: Assignment) -> None:
    now = timezone.now()
    Assignment.objects.filter(pk=assignment.pk).update(
        leased_at=now - timedelta(seconds=20), expires_at=now - timedelta(seconds=10)
    )


def test_an_expired_lease_now_held_by_someone_else_is_410(
    quick_campaign: Callable[..., Campaign], annotator: Any, other_annotator: Any,
    api_client_for: Callable[..., Any], lease_for: Callable[..., Any],
) -> None:
    campaign = quick_campaign(pairs=1, overlap=1, lease_seconds=5)
    mine = lease_for(annotator, campaign)
    _expire(Assignment.objects.get(pk=mine["assignment_id"]))
    theirs = lease_for(other_annotator, campaign)  # the lapsed pair went back to the pool
    assert Assignment.objects.get(pk=theirs["assignment_id"]).pair_id == Pair.objects.get().pk

    response = api_client_for(annotator).post(_judgement_url(mine["assignment_id"]), VALID_ANSWER, format="json")
    assert response.status_code == 410
    assert "expired" in response.json()["detail"]
    assert not Judgement.objects.exists()
    # The new holder can still answer.
    assert api_client_for(other_annotator).post(
        _judgement_url(theirs["assignment_id"]), VALID_ANSWER, format="json").status_code == 201


def test_an_expired_lease_that_nobody_took_is_still_accepted(
    quick_campaign: Callable[..., Campaign], annotator: Any, api_client_for: Callable[..., Any],
    lease_for: Callable[..., Any],
) -> None:
    campaign = quick_campaign(pairs=1, overlap=1, lease_seconds=5)
    mine = lease_for(annotator, campaign)
    _expire(Assignment.objects.get(pk=mine["assignment_id"]))
    response = api_client_for(annotator).post(_judgement_url(mine["assignment_id"]), VALID_ANSWER, format="json")
    assert response.status_code == 201
    assert Judgement.objects.get().assignment_id == mine["assignment_id"]


BAD_JUDGEMENTS: list[tuple[str, Any, str]] = [
    ("malformed-json", '{"preference": "left",', "JSON parse error"),
    ("body-is-a-list", "[1, 2]", "must be a JSON object"),
    ("body-is-a-string", '"left"', "must be a JSON object"),
    ("empty-object", "{}", "preference: This field is required"),
    ("preference-enum", {**VALID_ANSWER, "preference": "a"}, 'preference: "a" is not a valid choice'),
    ("desirability-enum", {**VALID_ANSWER, "left_desirability": "great"},
     'left_desirability: "great" is not a valid choice'),
    ("right-desirability-missing", {"preference": "left", "left_desirability": "unsure"},
     "right_desirability: This field is required"),
    ("confidence-above-1", {**VALID_ANSWER, "confidence": 1.5}, "confidence: Ensure this value is less"),
    ("confidence-below-0", {**VALID_ANSWER, "confidence": -0.1}, "confidence: Ensure this value is greater"),
    ("confidence-nan-string", {**VALID_ANSWER, "confidence": "NaN"}, "confidence: A valid number"),
    ("confidence-nan-literal", '{"preference": "left", "left_desirability": "unsure", '
     '"right_desirability": "unsure", "confidence": NaN}', "NaN"),
    ("confidence-not-a-number", {**VALID_ANSWER, "confidence": "sure"}, "confidence: A valid number"),
    ("elapsed-negative", {**VALID_ANSWER, "elapsed_ms": -5}, "elapsed_ms: Ensure this value is greater"),
]


@pytest.mark.parametrize(("body", "problem"), [(body, problem) for _, body, problem in BAD_JUDGEMENTS],
                         ids=[name for name, _, _ in BAD_JUDGEMENTS])
def test_bad_judgement_input_is_400_naming_the_problem_and_writes_nothing(
    quick_campaign: Callable[..., Campaign], annotator: Any, api_client_for: Callable[..., Any],
    body: Any, problem: str,
) -> None:
    assignment = _lease_with_order(quick_campaign(pairs=1), annotator, left_is_a=True)
    client = api_client_for(annotator)
    before = (row_counts(), media_files(), list(Assignment.objects.values()))
    if isinstance(body, str):
        response = client.post(_judgement_url(assignment.pk), body, content_type="application/json")
    else:
        response = client.post(_judgement_url(assignment.pk), body, format="json")
    assert response.status_code == 400, response.content
    assert problem in response.json()["detail"]
    assert (row_counts(), media_files(), list(Assignment.objects.values())) == before
    assert not Judgement.objects.exists()


# The hot endpoints check their JSON by hand (feedback/apis/annotation.py); the serializers
# that document them are the reference: same values accepted, same messages, same error shape.
JUDGEMENT_BODIES: list[dict[str, Any]] = [
    VALID_ANSWER, {}, {"preference": None}, {**VALID_ANSWER, "preference": 1},
    {**VALID_ANSWER, "preference": ["left"]}, {**VALID_ANSWER, "right_desirability": ""},
    *({**VALID_ANSWER, "confidence": value} for value in
      [None, 0, 1, 0.5, "0.25", True, 1.0000001, -0.0, -1e-9, "", "abc", "NaN", "inf", [0.5], {}, 10**400, "9" * 1001]),
    *({**VALID_ANSWER, "elapsed_ms": value} for value in
      [None, 0, 5, "5", "5.0", "5.00 ", 5.0, 5.5, "5.5", True, -1, 24 * 3600 * 1000, 24 * 3600 * 1000 + 1,
       "1e3", [], "", "9" * 1001, 10**30]),
    {"preference": "right", "left_desirability": "great", "confidence": 2, "elapsed_ms": "x", "extra": 1},
]
EXCLUDE_BODIES: list[dict[str, Any]] = [
    {}, {"exclude": []}, {"exclude": None}, {"exclude": "3"}, {"exclude": {"a": 1}}, {"exclude": 3},
    {"exclude": [1, 2, 3]}, {"exclude": ["4", 5.0, "6.0"]}, {"exclude": [0, -1, None, "x", 2.5, True]},
    {"exclude": list(range(1, 21))}, {"exclude": list(range(1, 22))}, {"exclude": [0] * 25},
]


def _serializer_answer(serializer_class: Any, body: dict[str, Any]) -> tuple[bool, Any]:
    serializer = serializer_class(data=body)
    if serializer.is_valid():
        return True, dict(serializer.validated_data)
    return False, json.loads(json.dumps(serializer.errors))


def _hand_answer(check: Callable[[dict[str, Any]], Any], body: dict[str, Any]) -> tuple[bool, Any]:
    from rest_framework.exceptions import ValidationError

    try:
        return True, check(body)
    except ValidationError as exc:
        return False, json.loads(json.dumps(exc.detail))


@pytest.mark.parametrize("body", JUDGEMENT_BODIES, ids=[repr(b)[:60] for b in JUDGEMENT_BODIES])
def test_judgement_input_checks_match_the_documented_serializer(body: dict[str, Any]) -> None:
    from feedback.apis.annotation import JudgementApi, judgement_fields

    expected = _serializer_answer(JudgementApi.JudgementInputSerializer, body)
    assert _hand_answer(judgement_fields, body) == expected


@pytest.mark.parametrize("body", EXCLUDE_BODIES, ids=[repr(b)[:60] for b in EXCLUDE_BODIES])
def test_next_input_checks_match_the_documented_serializer(body: dict[str, Any]) -> None:
    from feedback.apis.annotation import CampaignNextApi, exclude_ids

    ok, expected = _serializer_answer(CampaignNextApi.NextInputSerializer, body)
    assert _hand_answer(lambda data: {"exclude": exclude_ids(data)}, body) == (ok, expected)


# --- query counts ----------------------------------------------------------------------------------

# The hot endpoints' statements are hand-written SQL (feedback/services/annotation_sql.py).
# New lease: token with the caller's groups (1), campaign with may-label (1), savepoint, the
# caller's open leases, lapsed leases to reclaim, then on PostgreSQL one statement that locks a
# candidate, takes its slot and inserts the lease returning both segments (1); SQLite, with no
# data-modifying CTEs, runs pick-with-segments, take the slot, insert (3). Release.
NEXT_NEW_LEASE_QUERIES = {"postgresql": 7, "sqlite": 9}
# Lapsed leases are looked for at most once a second per campaign: a new lease within that
# second runs one query less.
NEXT_NEW_LEASE_SOON_AFTER_QUERIES = {vendor: n - 1 for vendor, n in NEXT_NEW_LEASE_QUERIES.items()}
# Token, campaign, savepoint, open leases, the lease with its segments, renew, release.
NEXT_RESUMED_LEASE_QUERIES = {"postgresql": 7, "sqlite": 7}
# Token, savepoint, lock the assignment (with its pair and campaign), then on PostgreSQL one
# statement inserting the judgement, completing the assignment and counting the label; SQLite
# runs those as three. Release. (No lookup of an existing judgement while the assignment is open.)
JUDGEMENT_QUERIES = {"postgresql": 5, "sqlite": 7}
# Token, savepoint, lock the assignment, the stored judgement, release.
JUDGEMENT_RESUBMIT_QUERIES = {"postgresql": 5, "sqlite": 5}


def _pinned(counts: dict[str, int]) -> int:
    return counts[connection.vendor]


def test_next_and_judgement_run_a_fixed_number_of_queries(
    quick_campaign: Callable[..., Campaign], annotator: Any, api_client_for: Callable[..., Any],
    django_assert_num_queries: Any,
) -> None:
    campaign = quick_campaign(n_trajectories=4, pairs=20)
    client = api_client_for(annotator)
    client.get("/api/v1/me/")  # creates the token outside the measured calls
    with django_assert_num_queries(_pinned(NEXT_NEW_LEASE_QUERIES)):
        lease = client.post(_next_url(campaign), {}, format="json").json()
    with django_assert_num_queries(_pinned(NEXT_RESUMED_LEASE_QUERIES)):
        assert client.post(_next_url(campaign), {}, format="json").json()["assignment_id"] == lease["assignment_id"]
    with django_assert_num_queries(_pinned(JUDGEMENT_QUERIES)):
        assert client.post(_judgement_url(lease["assignment_id"]), VALID_ANSWER, format="json").status_code == 201
    with django_assert_num_queries(_pinned(JUDGEMENT_RESUBMIT_QUERIES)):
        assert client.post(_judgement_url(lease["assignment_id"]), VALID_ANSWER, format="json").status_code == 200
    # The count does not grow with the work already done in the campaign.
    for _ in range(5):
        lease = client.post(_next_url(campaign), {}, format="json").json()
        client.post(_judgement_url(lease["assignment_id"]), VALID_ANSWER, format="json")
    with django_assert_num_queries(_pinned(NEXT_NEW_LEASE_SOON_AFTER_QUERIES)):
        lease = client.post(_next_url(campaign), {}, format="json").json()
    with django_assert_num_queries(_pinned(JUDGEMENT_QUERIES)):
        client.post(_judgement_url(lease["assignment_id"]), VALID_ANSWER, format="json")
    annotation.forget_reclaim_times()  # as if a second had passed
    with django_assert_num_queries(_pinned(NEXT_NEW_LEASE_QUERIES)):
        client.post(_next_url(campaign), {}, format="json")


# Both at once: the judgement's queries, then the lease's without a second token lookup and
# without the campaign query (the campaign row comes with the judgement's assignment lock);
# measured, as under load, within a second of the campaign's last look for lapsed leases.
JUDGEMENT_WITH_NEXT_QUERIES = {
    vendor: JUDGEMENT_QUERIES[vendor] + NEXT_NEW_LEASE_SOON_AFTER_QUERIES[vendor] - 2 for vendor in JUDGEMENT_QUERIES
}


def test_a_judgement_can_carry_the_request_for_the_next_pair(
    quick_campaign: Callable[..., Campaign], annotator: Any, api_client_for: Callable[..., Any],
    django_assert_num_queries: Any,
) -> None:
    campaign = quick_campaign(n_trajectories=4, pairs=3)
    client = api_client_for(annotator)
    client.get("/api/v1/me/")  # creates the token outside the measured calls
    first = client.post(_next_url(campaign), {}, format="json").json()
    shown = client.post(_next_url(campaign), {"exclude": [first["assignment_id"]]}, format="json").json()
    # Answer the first pair while the second is on screen: the answer brings a third pair.
    body = {**VALID_ANSWER, "next": {"exclude": [shown["assignment_id"]]}}
    with django_assert_num_queries(_pinned(JUDGEMENT_WITH_NEXT_QUERIES)):
        response = client.post(_judgement_url(first["assignment_id"]), body, format="json")
    assert response.status_code == 201, response.content
    answered = response.json()
    third = answered.pop("next")
    assert answered["assignment_id"] == first["assignment_id"] and "next_detail" not in answered
    assert Judgement.objects.get(pk=answered["id"]).assignment_id == first["assignment_id"]
    lease = Assignment.objects.get(pk=third["assignment_id"])
    assert lease.annotator == annotator and lease.completed_at is None
    assert {first["assignment_id"], shown["assignment_id"], third["assignment_id"]} == set(
        Assignment.objects.filter(pair__campaign=campaign).values_list("id", flat=True)
    )
    assert third["left"]["clip_url"] and third["campaign_id"] == campaign.pk
    # An identical resubmit (a retry after a lost response) hands back that same open lease.
    again = client.post(_judgement_url(first["assignment_id"]), body, format="json")
    assert again.status_code == 200
    assert again.json()["next"]["assignment_id"] == third["assignment_id"]
    # `true` excludes nothing; nothing left is null, as 204 is for `next`.
    client.post(_judgement_url(shown["assignment_id"]), VALID_ANSWER, format="json")
    last = client.post(_judgement_url(third["assignment_id"]), {**VALID_ANSWER, "next": True}, format="json")
    assert last.status_code == 201 and last.json()["next"] is None and "next_detail" not in last.json()
    assert Judgement.objects.filter(annotator=annotator).count() == 3


def test_a_judgement_whose_next_pair_cannot_be_leased_is_still_stored(
    quick_campaign: Callable[..., Campaign], annotator: Any, api_client_for: Callable[..., Any],
) -> None:
    campaign = quick_campaign(pairs=2)
    client = api_client_for(annotator)
    lease = client.post(_next_url(campaign), {}, format="json").json()
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.PAUSED)
    response = client.post(_judgement_url(lease["assignment_id"]), {**VALID_ANSWER, "next": {}}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["next"] is None and "paused" in response.json()["next_detail"]
    assert Judgement.objects.filter(assignment_id=lease["assignment_id"]).exists()
    assert Assignment.objects.count() == 1


def test_a_judgement_does_not_lease_the_next_pair_of_a_campaign_no_longer_open_to_the_caller(
    quick_campaign: Callable[..., Campaign], annotator: Any, other_annotator: Any,
    api_client_for: Callable[..., Any],
) -> None:
    campaign = quick_campaign(pairs=3)
    client = api_client_for(annotator)
    lease = client.post(_next_url(campaign), {}, format="json").json()
    campaign.invited.add(other_annotator)  # now invitation-only, and the caller is not invited
    response = client.post(_judgement_url(lease["assignment_id"]), {**VALID_ANSWER, "next": {}}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["next"] is None and "invited" in response.json()["next_detail"]
    assert Assignment.objects.count() == 1
    campaign.invited.add(annotator)  # invited: the same request form leases again
    second = client.post(_next_url(campaign), {}, format="json").json()
    response = client.post(_judgement_url(second["assignment_id"]), {**VALID_ANSWER, "next": {}}, format="json")
    assert response.json()["next"]["assignment_id"] not in (lease["assignment_id"], second["assignment_id"])


@pytest.mark.parametrize(
    ("next_value", "problem"),
    [("yes", "Expected an object"), (3, "Expected an object"), ([1], "Expected an object"),
     ({"exclude": "3"}, "Expected a list"), ({"exclude": [0]}, "greater than or equal to 1")],
)
def test_a_bad_next_in_a_judgement_is_400_naming_it_and_writes_nothing(
    next_value: Any, problem: str, quick_campaign: Callable[..., Campaign], annotator: Any,
    api_client_for: Callable[..., Any],
) -> None:
    client = api_client_for(annotator)
    lease = client.post(_next_url(quick_campaign(pairs=2)), {}, format="json").json()
    before = (row_counts(), list(Assignment.objects.values()))
    response = client.post(
        _judgement_url(lease["assignment_id"]), {**VALID_ANSWER, "next": next_value}, format="json"
    )
    assert response.status_code == 400, response.content
    assert "next" in response.json()["detail"] and problem in response.content.decode()
    assert (row_counts(), list(Assignment.objects.values())) == before


# --- trajectories -----------------------------------------------------------------------------------


def _upload(client: Any, file: Any, **fields: Any) -> Any:
    data = {"env_id": "Toy-v0", "segment_length": 10, **fields}
    if file is not None:
        data["file"] = file
    return client.post("/api/v1/trajectories/", data, format="multipart")


def test_upload_with_frames_parks_them_and_the_render_task_makes_segments_ready(
    admin_user: Any, api_client_for: Callable[..., Any], django_capture_on_commit_callbacks: Any,
) -> None:
    client = api_client_for(admin_user)
    arrays = trajectory_arrays(25, frames=True)
    with django_capture_on_commit_callbacks(execute=True):
        response = _upload(client, npz_file(**arrays), seed=7, policy="scripted-v2")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["env_id"] == "Toy-v0" and body["policy"] == "scripted-v2" and body["seed"] == 7
    assert body["length"] == 25 and body["has_rewards"] is True
    assert body["true_return"] == pytest.approx(float(arrays["rewards"].sum()), rel=1e-5)
    # Full windows plus the 5-step tail (at least half a segment); nothing shown before render.
    assert [(s["start"], s["end"], s["clip_status"]) for s in body["segments"]] == [
        (0, 10, "pending"), (10, 20, "pending"), (20, 25, "pending")]
    trajectory = Trajectory.objects.get(pk=body["id"])
    assert trajectory.pending_frames.name.startswith("frames/")
    [task] = DBTaskResult.objects.all()
    assert task.task_path == "feedback.tasks.render_trajectory_clips" and task.args_kwargs == {"args": [trajectory.pk], "kwargs": {}}

    assert render_trajectory_clips.call(trajectory.pk) == 3

    detail = client.get(f"/api/v1/trajectories/{trajectory.pk}/").json()
    assert [s["clip_status"] for s in detail["segments"]] == ["ready"] * 3
    for segment in Segment.objects.filter(trajectory=trajectory):
        with segment.clip.open("rb") as handle:
            assert handle.read(12)[4:8] == b"ftyp"
    trajectory.refresh_from_db()
    assert trajectory.pending_frames.name == ""
    # Stored: the arrays (without frames) and three clips; the parked frames are gone.
    assert sorted(path.parent.name for path in media_files()) == ["clips"] * 3 + ["trajectories"]
    with trajectory.arrays.open("rb") as handle, np.load(handle) as stored:
        assert sorted(stored.files) == ["actions", "observations", "rewards", "terminations"]
        np.testing.assert_array_equal(stored["observations"], arrays["observations"])


def test_upload_without_frames_makes_segments_that_are_never_leased(
    admin_user: Any, api_client_for: Callable[..., Any], django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = _upload(api_client_for(admin_user), npz_file(**trajectory_arrays(20)))
    assert response.status_code == 201
    assert [s["clip_status"] for s in response.json()["segments"]] == ["none", "none"]
    assert callbacks == [] and not DBTaskResult.objects.exists()
    campaign = services.campaign_create(name="c", env=Trajectory.objects.get().env, segment_length=10)
    with pytest.raises(services.NotEnoughSegments, match="0 ready segment"):
        services.pairs_create_random(campaign=campaign, count=1)


def test_upload_default_segment_length_comes_from_settings(
    admin_user: Any, api_client_for: Callable[..., Any], settings: Any,
) -> None:
    settings.PREFLAB_DEFAULT_SEGMENT_LENGTH = 8
    response = api_client_for(admin_user).post(
        "/api/v1/trajectories/", {"file": npz_file(**trajectory_arrays(16)), "env_id": "Toy-v0"},
        format="multipart",
    )
    assert [(s["start"], s["end"]) for s in response.json()["segments"]] == [(0, 8), (8, 16)]


def _npz_bytes(save: Callable[..., None] = np.savez_compressed, **arrays: Any) -> bytes:
    buffer = io.BytesIO()
    save(buffer, **arrays)
    return buffer.getvalue()


def _bad_upload(name: str) -> tuple[bytes, str]:
    """A named bad upload: (file bytes, phrase the refusal must contain)."""
    good = trajectory_arrays(20)
    length = 20
    if name == "mismatched-lengths":
        return _npz_bytes(**{**good, "actions": good["actions"][:19]}), \
            "'actions' has 19 steps but 'observations' has 20"
    if name == "nan-observations":
        observations = good["observations"].copy()
        observations[4, 1] = np.nan
        return _npz_bytes(**{**good, "observations": observations}), \
            "'observations' contains NaN or infinity (first at step 4)"
    if name == "inf-rewards":
        rewards = good["rewards"].copy()
        rewards[7] = np.inf
        return _npz_bytes(**{**good, "rewards": rewards}), "'rewards' contains NaN or infinity (first at step 7)"
    if name == "pickled-object-array":
        objects = np.empty(length, dtype=object)
        objects[:] = [{"step": i} for i in range(length)]
        return _npz_bytes(np.savez, **{**good, "observations": objects}), "pickled object array"
    if name == "string-actions":
        return _npz_bytes(**{**good, "actions": np.array(["left"] * length)}), "'actions' has dtype <U4"
    if name == "not-a-zip":
        return b"observations,actions\n0.1,1\n", "not a .npz archive"
    if name == "bare-npy":
        buffer = io.BytesIO()
        np.save(buffer, good["observations"])
        return buffer.getvalue(), "single .npy array"
    if name == "truncated-zip":
        return _npz_bytes(**good)[:200], "not a readable .npz archive"
    if name == "empty-file":
        return b"", "The submitted file is empty"
    if name == "missing-observations":
        return _npz_bytes(actions=good["actions"]), "missing 'observations'"
    if name == "unknown-keys":
        return _npz_bytes(**good, infos=np.zeros(length)), "unknown arrays ['infos']"
    if name == "empty-trajectory":
        return _npz_bytes(observations=np.zeros((0, 3)), actions=np.zeros((0, 1))), "'observations' is empty"
    if name == "rewards-2d":
        return _npz_bytes(**{**good, "rewards": np.zeros((length, 2))}), "'rewards' must have shape (T,)"
    if name == "frames-without-channels":
        return _npz_bytes(**good, frames=np.zeros((length, 32, 32), np.uint8)), \
            "'frames' must have shape (T, H, W, 3)"
    if name == "frames-float":
        return _npz_bytes(**good, frames=np.zeros((length, 32, 32, 3), np.float32)), "'frames' must be uint8"
    if name == "frames-tiny":
        return _npz_bytes(**good, frames=np.zeros((length, 8, 8, 3), np.uint8)), "at least 16 pixels"
    raise AssertionError(name)


BAD_UPLOADS = [
    "mismatched-lengths", "nan-observations", "inf-rewards", "pickled-object-array", "string-actions",
    "not-a-zip", "bare-npy", "truncated-zip", "empty-file", "missing-observations", "unknown-keys",
    "empty-trajectory", "rewards-2d", "frames-without-channels", "frames-float", "frames-tiny",
]


@pytest.mark.parametrize("name", BAD_UPLOADS)
def test_a_bad_npz_is_400_naming_the_problem_and_nothing_is_written(
    admin_user: Any, api_client_for: Callable[..., Any], nothing_written: Callable[[], None], name: str,
) -> None:
    content, problem = _bad_upload(name)
    file = SimpleUploadedFile("t.npz", content, content_type="application/octet-stream")
    response = _upload(api_client_for(admin_user), file)
    assert response.status_code == 400, response.content
    assert problem in response.json()["detail"]
    assert response.json()["detail"].startswith("Invalid input. file: ")
    nothing_written()


def test_a_pickled_object_array_is_never_unpickled(
    admin_user: Any, api_client_for: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pickle

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the upload was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    content, _ = _bad_upload("pickled-object-array")
    file = SimpleUploadedFile("t.npz", content)
    assert _upload(api_client_for(admin_user), file).status_code == 400


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"env_id": "not an env"}, "env_id: must be a Gymnasium id with its version, e.g. 'Hopper-v5'."),
        ({"env_id": "CartPole"}, "env_id: must be a Gymnasium id with its version"),
        ({"policy": "../etc/passwd"}, "policy: may only hold letters, digits"),
        ({"segment_length": 1}, "segment_length: Ensure this value is greater"),
        ({"seed": -1}, "seed: Ensure this value is greater"),
        ({"file": None}, "file: No file was submitted"),
    ],
    ids=["env-id-spaces", "env-id-without-version", "policy-path", "segment-length", "seed", "no-file"],
)
def test_bad_upload_fields_are_400_naming_the_field_and_nothing_is_written(
    admin_user: Any, api_client_for: Callable[..., Any], nothing_written: Callable[[], None],
    fields: dict[str, Any], problem: str,
) -> None:
    data = {"file": npz_file(**trajectory_arrays(20)), **fields}
    response = _upload(api_client_for(admin_user), data.pop("file"), **data)
    assert response.status_code == 400, response.content
    assert problem in response.json()["detail"]
    nothing_written()


def test_a_trajectory_too_short_for_one_segment_is_refused(
    admin_user: Any, api_client_for: Callable[..., Any], nothing_written: Callable[[], None],
) -> None:
    response = _upload(api_client_for(admin_user), npz_file(**trajectory_arrays(4, frames=True)),
                       segment_length=10)
    assert response.status_code == 400
    assert "has 4 steps, fewer than half a segment of 10" in response.json()["detail"]
    nothing_written()


def test_an_oversized_upload_is_413_naming_the_limit_and_nothing_is_written(
    admin_user: Any, api_client_for: Callable[..., Any], settings: Any, nothing_written: Callable[[], None],
) -> None:
    settings.PREFLAB_MAX_UPLOAD_BYTES = 2048
    file = npz_file(compressed=False, **trajectory_arrays(200))
    assert file.size > 2048
    response = _upload(api_client_for(admin_user), file)
    assert response.status_code == 413
    assert f"is {file.size} bytes; the limit is 2048 bytes" in response.json()["detail"]
    nothing_written()


def test_an_upload_that_fails_while_storing_leaves_no_row_and_no_file(
    admin_user: Any, api_client_for: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
    nothing_written: Callable[[], None],
) -> None:
    from feedback.models import Segment as SegmentModel

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr(SegmentModel.objects, "bulk_create", explode)
    client = api_client_for(admin_user)
    client.raise_request_exception = True
    with pytest.raises(RuntimeError, match="disk full"):
        _upload(client, npz_file(**trajectory_arrays(20, frames=True)))
    nothing_written()


def test_unknown_trajectory_is_404_naming_the_id(researcher: Any, api_client_for: Callable[..., Any]) -> None:
    response = api_client_for(researcher).get("/api/v1/trajectories/555/")
    assert response.status_code == 404
    assert "555" in response.json()["detail"]


def test_a_json_upload_is_415_naming_the_media_type(admin_user: Any, api_client_for: Callable[..., Any]) -> None:
    response = api_client_for(admin_user).post("/api/v1/trajectories/", {"env_id": "Toy-v0"}, format="json")
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]


# --- clips ----------------------------------------------------------------------------------------


def test_clip_of_an_unknown_or_unrendered_segment_is_404(
    annotator: Any, api_client_for: Callable[..., Any], admin_user: Any,
) -> None:
    client = api_client_for(admin_user)
    response = _upload(client, npz_file(**trajectory_arrays(20)))
    pending = response.json()["segments"][0]["id"]
    annotator_client = api_client_for(annotator)
    assert annotator_client.get(f"/clips/{pending}.mp4").status_code == 404
    assert annotator_client.get("/clips/99999.mp4").status_code == 404


def test_clip_accepts_a_session_login(quick_campaign: Callable[..., Campaign], annotator: Any, client: Any) -> None:
    quick_campaign(pairs=1)
    segment = Segment.objects.filter(clip_status="ready").first()
    assert client.get(f"/clips/{segment.pk}.mp4").status_code == 401
    client.force_login(annotator)
    response = client.get(f"/clips/{segment.pk}.mp4")
    assert response.status_code == 200
    assert b"".join(response.streaming_content)[4:8] == b"ftyp"


def test_abandoned_leases_do_not_make_next_slower(
    quick_campaign: Callable[..., Campaign], annotator: Any, other_annotator: Any,
    api_client_for: Callable[..., Any], django_assert_num_queries: Any,
) -> None:
    """Lapsed leases whose pairs others took stay open forever; next must not walk them."""
    campaign = quick_campaign(n_trajectories=4, pairs=12, overlap=1, lease_seconds=5)
    past = timezone.now() - timedelta(minutes=10)
    abandoned = []
    for _ in range(5):
        abandoned.append(services.assignment_lease_next(
            campaign=campaign, annotator=annotator, now=past, exclude_ids=[a.pk for a in abandoned]))
    for _ in range(5):  # the lapsed pairs go to someone else
        lease = services.assignment_lease_next(campaign=campaign, annotator=other_annotator)
        services.judgement_record(assignment_id=lease.pk, annotator=other_annotator,
                                  answer=services.JudgementInput(**VALID_ANSWER))
    assert {a.pair_id for a in abandoned} == set(
        Judgement.objects.filter(annotator=other_annotator).values_list("pair_id", flat=True))
    client = api_client_for(annotator)
    client.get("/api/v1/me/")
    annotation.forget_reclaim_times()  # this lease looks for lapsed leases too
    with django_assert_num_queries(_pinned(NEXT_NEW_LEASE_QUERIES)):
        lease = client.post(_next_url(campaign), {}, format="json").json()
    assert lease["assignment_id"] not in {a.pk for a in abandoned}


def test_clip_whose_file_vanished_from_storage_is_a_404_not_a_500(
    quick_campaign: Callable[..., Campaign], annotator: Any, api_client_for: Callable[..., Any],
) -> None:
    quick_campaign(pairs=1)
    segment = Segment.objects.filter(clip_status="ready").first()
    default_storage.delete(segment.clip.name)
    response = api_client_for(annotator).get(f"/clips/{segment.pk}.mp4")
    assert response.status_code == 404
    assert b"missing from storage" in response.content
