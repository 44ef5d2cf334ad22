"""The admin's session-history browser, through Django's test client against the real store."""

import json
import re

import pytest
from django.urls import reverse

from tests.store_fixtures import a_run_sync, run_surql

pytestmark = pytest.mark.django_db


def make_session(store, peer="alice", agent="helper", channel="webchat", texts=("hello",)):
    """A session with one finished run that said `texts` as user messages."""
    s, run = a_run_sync(store, f"agent:{agent}:{channel}:-:{peer}", agent, channel=channel, peer=peer, running=True)
    for text in texts:
        store.sync.append_message(s["id"], "user", text, run_id=run["id"])
    store.sync.update_run(run["id"], status="done", stop_reason="end_turn")
    return store.sync.get_session(s["id"])


def session_with_tool_call(store):
    s, run = a_run_sync(store, "agent:helper:webchat:-:alice", channel="webchat", peer="alice", running=True)
    store.sync.append_message(s["id"], "user", "What is 2+2?", run_id=run["id"])
    store.sync.append_message(s["id"], "assistant", [
        {"type": "text", "text": "Let me add that."},
        {"type": "tool_use", "id": "tu_1", "name": "calc.add", "input": {"a": 2, "b": 2}},
    ], run_id=run["id"])
    store.sync.record_tool_call(run["id"], tool_use_id="tu_1", name="calc.add", input={"a": 2, "b": 2},
                                outcome="ok", output="4", duration_ms=3.5)
    store.sync.append_message(s["id"], "user", [{"type": "tool_result", "tool_use_id": "tu_1", "content": "4"}],
                              run_id=run["id"])
    store.sync.append_message(s["id"], "assistant", "2+2 is <b>4</b>.", run_id=run["id"], tokens=6)
    store.sync.update_run(run["id"], status="done", stop_reason="end_turn", usage={"input_tokens": 321, "output_tokens": 45})
    return store.sync.get_session(s["id"]), run


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(user)
    return client


def test_admin_index_links_to_the_session_browser(admin_client, process_store):
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert f'href="{reverse("admin_sessions:list")}"' in page and "Session history" in page


def test_list_shows_sessions_with_counts(admin_client, process_store):
    make_session(process_store, "alice", texts=("one", "two"))
    make_session(process_store, "bob")
    response = admin_client.get(reverse("admin_sessions:list"))
    assert response.status_code == 200
    assert response.context["total"] == 2
    page = response.content.decode()
    assert "2 sessions" in page and "agent:helper:webchat:-:alice" in page and "agent:helper:webchat:-:bob" in page


def test_list_filters_by_agent_channel_peer_status_and_date(admin_client, process_store):
    make_session(process_store, "alice")
    make_session(process_store, "bob", agent="ops", channel="slack")
    errored = make_session(process_store, "carol")
    _, run = a_run_sync(process_store, errored["key"], running=True)
    process_store.sync.update_run(run["id"], status="error", error="boom")
    make_session(process_store, "dave")
    url = reverse("admin_sessions:list")

    def peers(**params):
        return sorted(s["peer"] for s in admin_client.get(url, params).context["sessions"])

    assert peers(agent="ops") == ["bob"]
    assert peers(channel="webchat") == ["alice", "carol", "dave"]
    assert peers(peer="carol") == ["carol"]
    assert peers(status="error") == ["carol"]
    assert peers(since="2000-01-01", until="2999-01-01") == ["alice", "bob", "carol", "dave"]
    assert peers(until="2001-01-01") == []
    bad = admin_client.get(url, {"since": "2020-02-01", "until": "2020-01-01"})
    assert "must not be after" in bad.content.decode() and bad.context["sessions"] == []


def test_date_range_uses_last_activity_and_start(admin_client, process_store):
    make_session(process_store, "alice")
    old = make_session(process_store, "dave")
    run_surql(process_store, "UPDATE type::thing('session', $id) SET updated = <datetime> '2020-01-05T00:00:00Z'",
              {"id": old["id"]})
    url = reverse("admin_sessions:list")
    peers = sorted(s["peer"] for s in admin_client.get(url, {"since": "2021-01-01"}).context["sessions"])
    assert peers == ["alice"]


def test_full_text_search_lists_matching_sessions_and_marked_snippets(admin_client, process_store):
    make_session(process_store, "alice", texts=("Our invoices are overdue",))
    make_session(process_store, "bob", texts=("Nice weather today",))
    response = admin_client.get(reverse("admin_sessions:list"), {"q": "invoice"})
    assert [s["peer"] for s in response.context["sessions"]] == ["alice"]
    page = response.content.decode()
    assert "<mark>invoices</mark>" in page and "weather" not in page


def test_search_snippets_are_escaped(admin_client, process_store):
    make_session(process_store, "mallory", texts=("<script>alert(1)</script> payload",))
    page = admin_client.get(reverse("admin_sessions:list"), {"q": "payload"}).content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_sorting_and_pagination(admin_client, process_store, monkeypatch):
    monkeypatch.setattr("agents.admin_sessions.PER_PAGE", 2)
    for n in range(5):
        make_session(process_store, f"p{n}", texts=["x"] * n)
    url = reverse("admin_sessions:list")
    first = admin_client.get(url, {"sort": "-message_count"})
    assert [s["message_count"] for s in first.context["sessions"]] == [4, 3]
    assert first.context["pages"] == 3 and "page 1 of 3" in first.content.decode()
    third = admin_client.get(url, {"sort": "-message_count", "page": 3})
    assert [s["message_count"] for s in third.context["sessions"]] == [0]
    assert third.context["next_url"] is None and "page=2" in third.context["previous_url"]
    ascending = admin_client.get(url, {"sort": "message_count"})
    assert [s["message_count"] for s in ascending.context["sessions"]] == [0, 1]
    header = next(c for c in ascending.context["columns"] if c["label"] == "Messages")
    assert header["sorted"] and "sort=-message_count" in header["url"]


def test_transcript_shows_messages_tool_calls_and_run_usage(admin_client, process_store):
    session, run = session_with_tool_call(process_store)
    response = admin_client.get(reverse("admin_sessions:detail", args=[session["id"]]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "What is 2+2?" in page and "Let me add that." in page
    assert "calc.add" in page and "&quot;a&quot;: 2" in page, "tool input is shown"
    assert "Output:</div><pre>4</pre>" in page and "3.5 ms" in page
    assert 'class="badge ok"' in page
    assert "321 / 45" in page and "end_turn" in page
    assert "2+2 is &lt;b&gt;4&lt;/b&gt;." in page, "message text is escaped"
    assert 'id="live-tail"' in page and f'data-session-key="{session["key"]}"' in page
    # The result is shown once, on the tool card: not again as the user message that carried it to the LLM.
    assert "Result for" not in page and page.count("<pre>4</pre>") == 1
    assert [m["seq"] for m in response.context["transcript"]] == [1, 2, 4]


def test_a_tool_result_without_a_recorded_call_is_still_shown(admin_client, process_store):
    s, run = a_run_sync(process_store, "agent:helper:web:-:alice", channel="web", peer="alice", running=True)
    process_store.sync.append_message(s["id"], "assistant", [
        {"type": "tool_use", "id": "tu_5", "name": "calc.calc", "input": {"expr": "1"}}], run_id=run["id"])
    process_store.sync.append_message(s["id"], "user", [
        {"type": "tool_result", "tool_use_id": "tu_5", "content": "Cancelled: the run was aborted.", "is_error": True}],
        run_id=run["id"], interrupted="aborted")
    page = admin_client.get(reverse("admin_sessions:detail", args=[s["id"]])).content.decode()
    assert "Result for <code>tu_5</code> (error):<pre>Cancelled: the run was aborted.</pre>" in page


def test_times_name_their_zone(admin_client, process_store):
    session, _ = session_with_tool_call(process_store)
    listing = admin_client.get(reverse("admin_sessions:list")).content.decode()
    assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d UTC</td>", listing)
    detail = admin_client.get(reverse("admin_sessions:detail", args=[session["id"]])).content.decode()
    assert re.search(r"<dt>Started</dt><dd>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</dd>", detail)


def test_transcript_shows_tool_errors_and_interrupted_output(admin_client, process_store):
    s, run = a_run_sync(process_store, "agent:helper:webchat:-:alice", channel="webchat", peer="alice", running=True)
    process_store.sync.append_message(s["id"], "assistant", [
        {"type": "tool_use", "id": "tu_9", "name": "http_get.fetch", "input": {"url": "http://evil"}}], run_id=run["id"])
    process_store.sync.record_tool_call(run["id"], tool_use_id="tu_9", name="http_get.fetch", input={"url": "http://evil"},
                                        outcome="denied", error="host evil is not granted", duration_ms=0.2)
    process_store.sync.append_message(s["id"], "assistant", "I was about to", run_id=run["id"], interrupted="aborted")
    process_store.sync.update_run(run["id"], status="aborted", stop_reason="aborted")
    page = admin_client.get(reverse("admin_sessions:detail", args=[s["id"]])).content.decode()
    assert "host evil is not granted" in page and 'class="badge denied"' in page
    assert "interrupted: aborted" in page and "I was about to" in page


def test_transcript_pages_back_through_long_sessions(admin_client, process_store, monkeypatch):
    monkeypatch.setattr("agents.admin_sessions.TRANSCRIPT_PAGE", 3)
    s = make_session(process_store, texts=[f"message {i}" for i in range(1, 8)])
    url = reverse("admin_sessions:detail", args=[s["id"]])
    latest = admin_client.get(url)
    assert [m["seq"] for m in latest.context["transcript"]] == [5, 6, 7]
    earlier = admin_client.get(url + latest.context["earlier_url"])
    assert [m["seq"] for m in earlier.context["transcript"]] == [2, 3, 4]


def test_unknown_session_is_404(admin_client, process_store):
    assert admin_client.get(reverse("admin_sessions:detail", args=["nope"])).status_code == 404


def test_export_json_and_jsonl(admin_client, process_store):
    session, run = session_with_tool_call(process_store)
    response = admin_client.get(reverse("admin_sessions:export_json", args=[session["id"]]))
    assert response["Content-Disposition"] == f'attachment; filename="session-{session["id"]}.json"'
    document = json.loads(response.content)
    assert document["session"]["key"] == session["key"]
    assert [m["seq"] for m in document["messages"]] == [1, 2, 3, 4]
    assert document["runs"][0]["tool_calls"][0]["output"] == "4"
    assert document["messages"][1]["content"][1] == {"type": "tool_use", "id": "tu_1", "name": "calc.add", "input": {"a": 2, "b": 2}}

    response = admin_client.get(reverse("admin_sessions:export_jsonl", args=[session["id"]]))
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [x["type"] for x in lines] == ["session", "run", "message", "message", "message", "message"]
    assert lines[-1]["content"] == [{"type": "text", "text": "2+2 is <b>4</b>."}]


def test_export_reads_a_session_in_batches(admin_client, process_store, monkeypatch):
    monkeypatch.setattr("agents.admin_sessions.EXPORT_BATCH", 2)
    s = make_session(process_store, texts=[str(i) for i in range(5)])
    response = admin_client.get(reverse("admin_sessions:export_jsonl", args=[s["id"]]))
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [x["seq"] for x in lines if x["type"] == "message"] == [1, 2, 3, 4, 5]


def test_reset_asks_for_confirmation_then_starts_a_new_session(admin_client, process_store):
    old = make_session(process_store, texts=("before reset",))
    url = reverse("admin_sessions:reset", args=[old["id"]])
    confirm = admin_client.get(url)
    assert "Yes, reset this session" in confirm.content.decode()
    assert process_store.sync.current_session(old["key"])["id"] == old["id"], "GET changes nothing"
    response = admin_client.post(url)
    fresh = process_store.sync.current_session(old["key"])
    assert fresh["id"] != old["id"]
    assert response["Location"] == reverse("admin_sessions:detail", args=[fresh["id"]])
    assert process_store.sync.get_session(old["id"])["message_count"] == 1
    again = admin_client.post(url, follow=True)
    assert "only the current session of a key can be reset" in again.content.decode()


def test_delete_asks_for_confirmation_then_deletes(admin_client, process_store):
    s = make_session(process_store, texts=("bye",))
    url = reverse("admin_sessions:delete", args=[s["id"]])
    assert "cannot be undone" in admin_client.get(url).content.decode()
    assert process_store.sync.list_sessions()["total"] == 1
    response = admin_client.post(url, follow=True)
    assert "Deleted session" in response.content.decode()
    assert process_store.sync.list_sessions()["total"] == 0


def test_non_staff_users_are_sent_to_the_login_page(client, django_user_model, process_store):
    s = make_session(process_store)
    user = django_user_model.objects.create_user("customer", password="pw")
    client.force_login(user)
    for url in (reverse("admin_sessions:list"), reverse("admin_sessions:detail", args=[s["id"]]),
                reverse("admin_sessions:export_json", args=[s["id"]]), reverse("admin_sessions:delete", args=[s["id"]])):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login")), url
    assert client.post(reverse("admin_sessions:delete", args=[s["id"]])).status_code == 302
    assert process_store.sync.list_sessions()["total"] == 1


def grant(user, *codenames):
    from django.contrib.auth.models import Permission

    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="agents", codename__in=codenames))


def test_staff_get_exactly_what_their_session_permissions_allow(staff_client, process_store):
    s = make_session(process_store)
    detail = reverse("admin_sessions:detail", args=[s["id"]])
    assert staff_client.get(detail).status_code == 403, "staff without view session see nothing"
    assert staff_client.get(reverse("admin_sessions:list")).status_code == 403
    user = staff_client.session["_auth_user_id"]
    from django.contrib.auth import get_user_model

    viewer = get_user_model().objects.get(pk=user)
    grant(viewer, "view_session")
    assert staff_client.get(detail).status_code == 200
    assert staff_client.get(reverse("admin_sessions:export_json", args=[s["id"]])).status_code == 200
    assert staff_client.post(reverse("admin_sessions:delete", args=[s["id"]])).status_code == 403
    assert staff_client.post(reverse("admin_sessions:reset", args=[s["id"]])).status_code == 403
    assert process_store.sync.current_session(s["key"])["id"] == s["id"]
    grant(viewer, "change_session")
    assert staff_client.post(reverse("admin_sessions:reset", args=[s["id"]])).status_code == 302
    assert process_store.sync.current_session(s["key"])["id"] != s["id"]


def test_out_of_range_pages_and_message_numbers_are_refused_not_errors(admin_client, process_store):
    s = make_session(process_store)
    listing = admin_client.get(reverse("admin_sessions:list"), {"page": "99999999999999999999"})
    assert listing.status_code == 200 and "less than or equal to 1000000" in listing.content.decode()
    for before in ("99999999999999999999999", "0", "٣"):
        page = admin_client.get(reverse("admin_sessions:detail", args=[s["id"]]), {"before": before})
        assert page.status_code == 400 and "before must be a message number" in page.content.decode(), before


def test_every_store_sort_is_offered_in_the_filter_form():
    from agents.admin_sessions import FilterForm
    from agents.store.core import SORTS

    assert {value for value, _ in FilterForm.base_fields["sort"].choices} == set(SORTS)


def test_a_tool_calls_http_requests_are_shown_under_it(admin_client, process_store):
    s, run = a_run_sync(process_store, "agent:helper:webchat:-:alice", channel="webchat", peer="alice", running=True)
    process_store.sync.append_message(s["id"], "assistant", [
        {"type": "tool_use", "id": "tu_7", "name": "weather.now", "input": {"city": "Rome"}}], run_id=run["id"])
    http = [
        {"method": "GET", "host": "api.weather.example", "path": "/v1/now", "status": 302, "bytes": 0,
         "duration_ms": 12.25, "refused": None},
        {"method": "GET", "host": "127.0.0.1:9", "path": "/latest/meta-data", "status": None, "bytes": 0,
         "duration_ms": 0.0, "refused": "port_not_granted", "redirect": True},
    ]
    process_store.sync.record_tool_call(run["id"], tool_use_id="tu_7", name="weather.now", input={"city": "Rome"},
                                        outcome="denied", error="HTTP redirect refused", duration_ms=14.0, http=http)
    process_store.sync.update_run(run["id"], status="done", stop_reason="end_turn")
    assert process_store.sync.get_run(run["id"])["tool_calls"][0]["http"] == [
        {k: v for k, v in r.items() if v is not None} for r in http]
    page = admin_client.get(reverse("admin_sessions:detail", args=[s["id"]])).content.decode()
    assert "HTTP requests:" in page
    assert "<code>api.weather.example</code></td><td><code>/v1/now</code></td>" in page and "12.3 ms" in page
    assert "<code>/latest/meta-data</code> (redirect)" in page and "refused: port_not_granted" in page
