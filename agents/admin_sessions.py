"""The operators' session-history browser in the admin: list with filters, search and sorting; a
transcript with tool calls and per-run usage; JSON/JSONL export; reset and delete with confirmation.

Sessions live in SurrealDB, not in a Django table, so these are plain views behind
`admin.site.admin_view` (active staff only; everyone else goes to the admin login), mounted under
/admin/sessions/ by one line in exoclaw/urls.py. Each needs the permission of `agents.Session` that
the gateway maps to the same scope (`_needs`): view to browse and export, change to reset, delete
to delete.
"""

import datetime as dt
import json
import math

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_http_methods

from agents.store import NotFound, get_store, jsonable
from agents.store.core import SESSION_STATUSES
from agents.store.shapes import encode_cursor

app_name = "admin_sessions"
PER_PAGE = 50
TRANSCRIPT_PAGE = 200
EXPORT_BATCH = 1000
MAX_SEQ = 2**62  # the largest message number the store takes
COLUMNS = [("agent", "Agent"), ("updated", "Last activity"), ("created", "Started"), ("message_count", "Messages")]


class FilterForm(forms.Form):
    q = forms.CharField(required=False, label="Search", help_text="Words in any message, or part of the key or title")
    agent = forms.CharField(required=False)
    channel = forms.CharField(required=False)
    peer = forms.CharField(required=False)
    status = forms.ChoiceField(required=False, choices=[("", "any")] + [(s, s) for s in SESSION_STATUSES],
                               help_text="Status of the last run")
    since = forms.DateField(required=False, label="Active from", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="Active until", widget=forms.DateInput(attrs={"type": "date"}))
    sort = forms.ChoiceField(required=False, choices=[
        ("-updated", "Last activity, newest first"), ("updated", "Last activity, oldest first"),
        ("-created", "Started, newest first"), ("created", "Started, oldest first"),
        ("-message_count", "Most messages"), ("message_count", "Fewest messages"),
        ("agent", "Agent A–Z"), ("-agent", "Agent Z–A"),
    ])
    page = forms.IntegerField(required=False, min_value=1, max_value=1_000_000)

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError("“Active from” must not be after “Active until”.")
        return data

    def store_filters(self) -> dict:
        d = self.cleaned_data
        day = dt.timedelta(days=1)
        return {
            "q": d["q"] or None, "agent": d["agent"] or None, "channel": d["channel"] or None,
            "peer": d["peer"] or None, "status": d["status"] or None,
            "since": _midnight(d["since"]) if d["since"] else None,
            "until": _midnight(d["until"]) + day if d["until"] else None,
            "sort": d["sort"] or "-updated",
        }


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.timezone.utc)


def _context(request, **extra):
    return {**admin.site.each_context(request), **extra}


def _session_or_404(session_id):
    try:
        return get_store().sync.get_session(session_id)
    except NotFound:
        raise Http404(f"No session {session_id}") from None


def _needs(permission: str, what: str):
    """The view, only for staff who hold `agents.<permission>` (superusers hold every one)."""

    def wrap(view):
        def checked(request, *args, **kwargs):
            if not request.user.has_perm(f"agents.{permission}"):
                raise PermissionDenied(f"You need the “Can {permission.replace('_', ' ')}” permission to {what}.")
            return view(request, *args, **kwargs)

        return checked

    return wrap


@_needs("view_session", "browse sessions")
def session_list(request):
    form = FilterForm(request.GET or None)
    page_number, result, hits = 1, None, []
    if form.is_bound and not form.is_valid():
        result = {"items": [], "total": 0}
    else:
        if not form.is_bound:
            form = FilterForm({})
            form.is_valid()
        filters = form.store_filters()
        page_number = form.cleaned_data.get("page") or 1
        store = get_store()
        result = store.sync.list_sessions(**filters, limit=PER_PAGE, cursor=encode_cursor((page_number - 1) * PER_PAGE))
        if filters["q"]:
            hits = store.sync.search(filters["q"], limit=20, agent=filters["agent"])
    pages = max(1, math.ceil(result["total"] / PER_PAGE))
    query = request.GET.copy()
    query.pop("page", None)
    sort = form.cleaned_data.get("sort") if form.is_valid() else ""
    sort = sort or "-updated"
    columns = []
    for field, label in COLUMNS:
        flipped = field if sort == f"-{field}" else f"-{field}"
        columns.append({"label": label, "url": "?" + urlencode({**query.dict(), "sort": flipped}),
                        "sorted": sort.lstrip("-") == field, "descending": sort.startswith("-")})

    def page_url(n):
        return "?" + urlencode({**query.dict(), "page": n})

    return TemplateResponse(request, "admin/sessions/list.html", _context(
        request,
        title="Sessions",
        form=form,
        sessions=result["items"],
        total=result["total"],
        hits=hits,
        columns=columns,
        page=page_number,
        pages=pages,
        previous_url=page_url(page_number - 1) if page_number > 1 else None,
        next_url=page_url(page_number + 1) if page_number < pages else None,
    ))


def _tool_index(runs: list[dict]) -> dict:
    return {call["tool_use_id"]: call for run in runs for call in run["tool_calls"]}


def _duration_ms(run: dict) -> float | None:
    if run["started"] and run["finished"]:
        return (run["finished"] - run["started"]).total_seconds() * 1000
    return None


@_needs("view_session", "browse sessions")
def session_detail(request, session_id):
    store = get_store()
    session = _session_or_404(session_id)
    before = request.GET.get("before")
    before_seq = None
    if before:
        if not before.isascii() or not before.isdigit() or not 1 <= int(before) <= MAX_SEQ:
            return HttpResponseBadRequest(f"before must be a message number from 1 to {MAX_SEQ}",
                                          content_type="text/plain; charset=utf-8")
        before_seq = int(before)
    page = store.sync.history(session["id"], limit=TRANSCRIPT_PAGE, before_seq=before_seq)
    runs = store.sync.runs(session["id"])
    for run in runs:
        run["duration_ms"] = _duration_ms(run)
    calls = _tool_index(runs)
    # A tool call's card shows its recorded output or error, so the result message that carried it to
    # the LLM is not shown again; a result without such a card (its call on an earlier page, or never
    # recorded: an interrupted run) still is.
    on_cards = {
        block["id"]
        for message in page["messages"] for block in message["content"]
        if block["type"] == "tool_use" and (call := calls.get(block["id"]))
        and (call.get("output") is not None or call.get("error"))
    }
    transcript = []
    for message in page["messages"]:
        blocks = []
        for block in message["content"]:
            item = {"type": block["type"], "block": block}
            if block["type"] == "tool_use":
                item["input_json"] = json.dumps(block.get("input", {}), indent=2, ensure_ascii=False)
                item["call"] = calls.get(block["id"])
            elif block["type"] == "tool_result":
                if block.get("tool_use_id") in on_cards:
                    continue
                content = block.get("content", "")
                item["text"] = content if isinstance(content, str) else json.dumps(content, indent=2, ensure_ascii=False)
            blocks.append(item)
        if blocks or not message["content"] or message["interrupted"]:
            transcript.append({**message, "blocks": blocks})
    earlier = None
    if page["has_more"]:
        earlier = "?" + urlencode({"before": page["messages"][0]["seq"]})
    return TemplateResponse(request, "admin/sessions/detail.html", _context(
        request,
        title=session["title"] or session["key"],
        session=session,
        transcript=transcript,
        runs=runs,
        earlier_url=earlier,
        latest_url=reverse("admin_sessions:detail", args=[session["id"]]) if before_seq else None,
    ))


def _export_lines(session: dict):
    store = get_store()
    yield {"type": "session", **session}
    for run in store.sync.runs(session["id"]):
        yield {"type": "run", **run}
    after = 0
    while True:
        batch = store.sync.messages(session["id"], after_seq=after, limit=EXPORT_BATCH)
        for message in batch:
            yield {"type": "message", **message}
        if len(batch) < EXPORT_BATCH:
            return
        after = batch[-1]["seq"]


@_needs("view_session", "export sessions")
def session_export(request, session_id, fmt):
    session = _session_or_404(session_id)
    filename = f"session-{session['id']}.{fmt}"
    if fmt == "jsonl":
        lines = (json.dumps(jsonable(item), ensure_ascii=False) + "\n" for item in _export_lines(session))
        response = StreamingHttpResponse(lines, content_type="application/x-ndjson; charset=utf-8")
    else:
        items = list(_export_lines(session))
        document = {
            "session": {k: v for k, v in items[0].items() if k != "type"},
            "runs": [{k: v for k, v in i.items() if k != "type"} for i in items if i["type"] == "run"],
            "messages": [{k: v for k, v in i.items() if k != "type"} for i in items if i["type"] == "message"],
        }
        response = HttpResponse(json.dumps(jsonable(document), ensure_ascii=False, indent=2),
                                content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_http_methods(["GET", "POST"])
@_needs("change_session", "reset sessions")
def session_reset(request, session_id):
    session = _session_or_404(session_id)
    if not session["current"]:
        messages.error(request, "This session was already replaced by a newer one; only the current session of a key can be reset.")
        return redirect("admin_sessions:detail", session["id"])
    if request.method == "POST":
        fresh = get_store().sync.reset(session["key"])
        messages.success(request, f"Started a new session for {session['key']}. The previous one stays below as history.")
        return redirect("admin_sessions:detail", fresh["id"])
    return TemplateResponse(request, "admin/sessions/confirm.html", _context(
        request, title="Reset session", session=session, action="reset",
        explanation="The next message to this key starts a new, empty conversation. "
                    "This session and its messages stay browsable here.",
    ))


@require_http_methods(["GET", "POST"])
@_needs("delete_session", "delete sessions")
def session_delete(request, session_id):
    session = _session_or_404(session_id)
    if request.method == "POST":
        counts = get_store().sync.delete(session["id"])
        messages.success(request, f"Deleted session {session['key']} with {counts['messages']} messages and {counts['runs']} runs.")
        return redirect("admin_sessions:list")
    return TemplateResponse(request, "admin/sessions/confirm.html", _context(
        request, title="Delete session", session=session, action="delete",
        run_count=len(get_store().sync.runs(session["id"])),
        explanation="This permanently deletes the session, its messages and its runs. It cannot be undone.",
    ))


def _admin(view):
    return admin.site.admin_view(view)


urlpatterns = [
    path("", _admin(session_list), name="list"),
    path("<str:session_id>/", _admin(session_detail), name="detail"),
    path("<str:session_id>/export.json", _admin(session_export), {"fmt": "json"}, name="export_json"),
    path("<str:session_id>/export.jsonl", _admin(session_export), {"fmt": "jsonl"}, name="export_jsonl"),
    path("<str:session_id>/reset/", _admin(session_reset), name="reset"),
    path("<str:session_id>/delete/", _admin(session_delete), name="delete"),
]
