"""Live campaign updates over WebSocket, through the real ASGI app, with both channel layers."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.db import connections

from feedback.broadcast import campaign_event_send
from tests.websockets import ws_connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

@pytest_asyncio.fixture(autouse=True)
async def _close_thread_connections() -> Any:
    """sync_to_async work runs on a shared worker thread whose DB connection would outlive
    the test and block the test database's teardown on PostgreSQL."""
    yield
    await sync_to_async(connections.close_all)()




async def test_progress_on_connect_and_events_after(layer: str, make_campaign: Any, annotator: Any) -> None:
    campaign = await sync_to_async(make_campaign)(pairs=4)
    communicator = await ws_connect(f"/ws/campaigns/{campaign.pk}/", annotator)
    connected, _ = await communicator.connect()
    assert connected
    first = await communicator.receive_json_from(timeout=5)
    assert first == {"event": "progress", "campaign_id": campaign.pk, "pair_count": 4, "labels_wanted": 4, "label_count": 0}

    await sync_to_async(campaign_event_send)(campaign_id=campaign.pk, event="pairs_added", extra={"added": 2})
    pushed = await communicator.receive_json_from(timeout=5)
    assert pushed["event"] == "pairs_added" and pushed["added"] == 2 and pushed["pair_count"] == 4

    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=5) == {"event": "pong"}
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("who", "code"), [("anonymous", 4401), ("outsider", 4403), ("unknown-campaign", 4404)]
)
async def test_refused_connections_close_with_a_reason(
    who: str, code: int, make_campaign: Any, annotator: Any, outsider: Any
) -> None:
    campaign = await sync_to_async(make_campaign)(pairs=1)
    user = {"anonymous": None, "outsider": outsider, "unknown-campaign": annotator}[who]
    campaign_id = campaign.pk + 1000 if who == "unknown-campaign" else campaign.pk
    communicator = await ws_connect(f"/ws/campaigns/{campaign_id}/", user)
    connected, close_code = await communicator.connect()
    assert not connected and close_code == code


async def test_queued_pairs_and_judgements_are_pushed_after_commit(
    layer: str, make_campaign: Any, annotator: Any
) -> None:
    from feedback import services

    campaign = await sync_to_async(make_campaign)(n_trajectories=4, pairs=2)
    communicator = await ws_connect(f"/ws/campaigns/{campaign.pk}/", annotator)
    assert (await communicator.connect())[0]
    await communicator.receive_json_from(timeout=5)  # the progress sent on connect

    await sync_to_async(services.pairs_create_random)(campaign=campaign, count=3, seed=5)
    added = await communicator.receive_json_from(timeout=5)
    assert added["event"] == "pairs_added" and added["added"] == 3 and added["pair_count"] == 5

    def lease_and_answer() -> None:
        assignment = services.assignment_lease_next(campaign=campaign, annotator=annotator)
        answer = services.JudgementInput(
            preference="left", left_desirability="desirable", right_desirability="unsure"
        )
        services.judgement_record(assignment_id=assignment.pk, annotator=annotator, answer=answer)

    await sync_to_async(lease_and_answer)()
    progress = await communicator.receive_json_from(timeout=5)
    assert progress == {"event": "progress", "campaign_id": campaign.pk, "pair_count": 5,
                        "labels_wanted": 5, "label_count": 1}
    await communicator.disconnect()


async def test_progress_after_a_burst_of_judgements_is_coalesced_and_ends_on_the_final_count(
    layer: str, make_campaign: Any, annotator: Any
) -> None:
    """In a server, judgements committed close together yield fewer "progress" events than
    judgements, and the last event carries the count after all of them."""
    import asyncio

    from feedback import services

    campaign = await sync_to_async(make_campaign)(n_trajectories=4, pairs=4)
    communicator = await ws_connect(f"/ws/campaigns/{campaign.pk}/", annotator)
    assert (await communicator.connect())[0]
    await communicator.receive_json_from(timeout=5)  # the progress sent on connect

    def answer_all() -> None:
        answer = services.JudgementInput(preference="left", left_desirability="unsure", right_desirability="unsure")
        while (assignment := services.assignment_lease_next(campaign=campaign, annotator=annotator)) is not None:
            services.judgement_record(assignment_id=assignment.pk, annotator=annotator, answer=answer)

    await sync_to_async(answer_all)()
    events = [await communicator.receive_json_from(timeout=5)]
    while events[-1]["label_count"] < 4:
        events.append(await communicator.receive_json_from(timeout=5))
    await asyncio.sleep(0.3)  # nothing else is on its way
    assert await communicator.receive_nothing(timeout=0.1)
    assert all(event["event"] == "progress" for event in events)
    assert len(events) < 4 and events[-1]["label_count"] == 4
    await communicator.disconnect()
