"""The Extism host with real plug-ins: grants, limits, errors, cancellation, concurrency."""

import asyncio
import functools
import json
import shutil
import time

import pytest

from sandbox.errors import SandboxError
from sandbox.host import Host, PluginSpec
from sandbox.manifest import Grant, PathGrant
from tests.sandbox_fixtures import host, loopback_http, spec, started_event, wasm_path  # noqa: F401


def mcp_call(tool: str, **arguments) -> bytes:
    return json.dumps({"params": {"name": tool, "arguments": arguments}}).encode()


def mcp_text(output: bytes) -> tuple[str, bool]:
    data = json.loads(output)
    return data["content"][0]["text"], data["isError"]


def fails_with(kind, fn, *args, **kwargs) -> SandboxError:
    with pytest.raises(SandboxError) as caught:
        fn(*args, **kwargs)
    assert caught.value.kind == kind, f"expected {kind}, got {caught.value}"
    return caught.value


def test_echo_returns_its_input_from_a_fresh_instance(host):
    out = host.run(spec("echo"), "echo", b"hello \x00 bytes", Grant())
    assert out.output == b"hello \x00 bytes"


def test_compiled_once_per_wasm_and_grant(host):
    first = host.run(spec("echo"), "echo", b"a", Grant())
    again = host.run(spec("echo"), "echo", b"b", Grant())
    other_grant = host.run(spec("echo"), "echo", b"c", Grant(timeout_ms=1234))
    assert first.compile_ms > 0 and again.compile_ms == 0 and other_grant.compile_ms > 0


def test_no_state_leaks_between_calls(host):
    # count_vowels keeps a running total in an Extism var: a reused instance would report 6 the second time.
    outputs = [json.loads(host.run(spec("count_vowels"), "count_vowels", b"Hello World", Grant()).output) for _ in range(2)]
    assert outputs == [{"count": 3, "total": 3, "vowels": "aeiouAEIOU"}] * 2


def test_http_get_reaches_a_granted_loopback_host(host, loopback_http):
    grant = Grant(allowed_hosts=(f"127.0.0.1:{loopback_http}",))
    out = host.run(spec("http_get"), "call", mcp_call("fetch", url=f"http://127.0.0.1:{loopback_http}/hi"), grant)
    text, is_error = mcp_text(out.output)
    assert not is_error
    assert json.loads(text) == {"path": "/hi", "greeting": "hello from loopback"}


def test_http_get_reports_http_errors_as_tool_errors(host, loopback_http):
    grant = Grant(allowed_hosts=(f"127.0.0.1:{loopback_http}",))
    out = host.run(spec("http_get"), "call", mcp_call("fetch", url=f"http://127.0.0.1:{loopback_http}/missing"), grant)
    text, is_error = mcp_text(out.output)
    assert is_error and text.startswith("HTTP 404: ")


def test_http_get_to_an_ungranted_host_is_host_denied_with_the_cause(host, loopback_http):
    # localhost is the same server as 127.0.0.1: only the grant differs.
    grant = Grant(allowed_hosts=(f"127.0.0.1:{loopback_http}",))
    url = f"http://localhost:{loopback_http}/secret"
    error = fails_with("host_denied", host.run, spec("http_get"), "call", mcp_call("fetch", url=url), grant)
    assert error.reason == "not_granted" and f"{url}: the host localhost is not in the grant" in error.message
    assert "backtrace" not in error.message


def test_http_get_with_no_grant_reaches_nothing(host, loopback_http):
    url = f"http://127.0.0.1:{loopback_http}/"
    fails_with("host_denied", host.run, spec("http_get"), "call", mcp_call("fetch", url=url), Grant())


@pytest.mark.asyncio
async def test_concurrent_denials_are_attributed_to_their_own_calls(host, loopback_http):
    granted = Grant(allowed_hosts=(f"127.0.0.1:{loopback_http}",))
    urls = [f"http://localhost:{loopback_http}/call{i}" for i in range(6)]
    calls = [host.call(spec("http_get"), "call", mcp_call("fetch", url=url), granted) for url in urls]
    calls += [host.call(spec("http_get"), "call", mcp_call("fetch", url=f"http://127.0.0.1:{loopback_http}/ok"), granted)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    for url, result in zip(urls, results):
        assert isinstance(result, SandboxError) and result.kind == "host_denied"
        assert url in result.message, f"{url} got someone else's cause: {result.message}"
    assert mcp_text(results[-1].output) == ('{"path": "/ok", "greeting": "hello from loopback"}', False)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("granted notes\n")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "fixed.txt").write_text("read only\n")
    (tmp_path / "secret.txt").write_text("outside the grant\n")
    grant = Grant(
        allowed_paths=(
            PathGrant(str(tmp_path / "data"), "/data"),
            PathGrant(str(tmp_path / "ro"), "/ro", read_only=True),
        )
    )
    return tmp_path, grant


def read_file(host, grant, tool, **arguments):
    return host.run(spec("read_file", wasi=True), "call", mcp_call(tool, **arguments), grant)


def test_read_file_inside_a_granted_dir(host, files):
    _, grant = files
    assert mcp_text(read_file(host, grant, "read_file", path="/data/notes.txt").output) == ("granted notes\n", False)
    assert mcp_text(read_file(host, grant, "read_file", path="/ro/fixed.txt").output) == ("read only\n", False)


def test_read_file_outside_the_grant_is_host_denied(host, files):
    tmp_path, grant = files
    error = fails_with("host_denied", read_file, host, grant, "read_file", path=str(tmp_path / "secret.txt"))
    assert "outside the granted directories" in error.message


def test_read_file_cannot_escape_with_dotdot(host, files):
    _, grant = files
    fails_with("host_denied", read_file, host, grant, "read_file", path="/data/../secret.txt")
    fails_with("host_denied", read_file, host, grant, "read_file", path="/data/../../../etc/passwd")


def test_read_only_paths_cannot_be_written(host, files):
    tmp_path, grant = files
    fails_with("host_denied", read_file, host, grant, "write_file", path="/ro/fixed.txt", content="changed")
    fails_with("host_denied", read_file, host, grant, "write_file", path="/ro/new.txt", content="new")
    assert (tmp_path / "ro" / "fixed.txt").read_text() == "read only\n"
    assert not (tmp_path / "ro" / "new.txt").exists()


def test_read_write_paths_can_be_written(host, files):
    tmp_path, grant = files
    out = read_file(host, grant, "write_file", path="/data/new.txt", content="line one\nline two")
    assert mcp_text(out.output) == ("wrote 17 bytes", False)
    assert (tmp_path / "data" / "new.txt").read_text() == "line one\nline two"


def test_a_missing_file_is_a_tool_error_not_a_denial(host, files):
    _, grant = files
    text, is_error = mcp_text(read_file(host, grant, "read_file", path="/data/nope.txt").output)
    assert is_error and "No such file or directory" in text


def test_loop_stops_at_its_timeout(host):
    error = fails_with("timeout", host.run, spec("loop"), "spin", b"", Grant(timeout_ms=200))
    assert "200 ms" in error.message


@pytest.mark.parametrize("function", ["alloc", "grow"])
def test_memory_bomb_stops_at_its_limit(host, function):
    error = fails_with("out_of_memory", host.run, spec("membomb"), function, b"", Grant(memory_mb=8))
    assert "8 MiB" in error.message


def test_trap_is_a_clean_error_with_its_cause(host):
    error = fails_with("trap", host.run, spec("trap"), "boom", b"", Grant())
    assert "unreachable" in error.message


def test_error_set_message_is_a_plugin_error(host):
    error = fails_with("plugin_error", host.run, spec("trap"), "fail", b"", Grant())
    assert error.message == "the widget is not configured"


def test_missing_export_is_not_found(host):
    fails_with("not_found", host.run, spec("trap"), "no_such_export", b"", Grant())


def test_huge_output_is_refused_above_the_grant_limit(host):
    error = fails_with("invalid_output", host.run, spec("huge_output"), "flood", b"2000000", Grant(max_output_bytes=1_000_000))
    assert "2000000 bytes" in error.message
    assert len(host.run(spec("huge_output"), "flood", b"1000", Grant(max_output_bytes=1000)).output) == 1000


def test_wasm_not_matching_its_pinned_sha256_refuses_to_load(host, tmp_path):
    path = tmp_path / "echo.wasm"
    shutil.copy(wasm_path("echo"), path)
    pinned = PluginSpec(name="echo", sha256=spec("echo").sha256, wasm_path=str(path))
    path.write_bytes(wasm_path("calc").read_bytes())
    error = fails_with("hash_mismatch", host.run, pinned, "echo", b"x", Grant())
    assert spec("calc").sha256 in error.message and pinned.sha256 in error.message


def test_secrets_come_from_the_environment_at_call_time(host):
    grant = Grant(secret_env={"vowels": "EXOCLAW_TEST_VOWELS"})
    out = host.run(spec("count_vowels"), "count_vowels", b"Hello World", grant, environ={"EXOCLAW_TEST_VOWELS": "lo"})
    assert json.loads(out.output)["count"] == 5
    error = fails_with("not_found", host.run, spec("count_vowels"), "count_vowels", b"x", grant, environ={})
    assert "EXOCLAW_TEST_VOWELS" in error.message


@pytest.mark.asyncio
async def test_async_calls_each_get_an_instance_no_call_has_used(host):
    # The async path prepares the next call's instance ahead; it must be a new one every time.
    outputs = [json.loads((await host.call(spec("count_vowels"), "count_vowels", b"Hello World", Grant())).output) for _ in range(6)]
    assert outputs == [{"count": 3, "total": 3, "vowels": "aeiouAEIOU"}] * 6


@pytest.mark.asyncio
async def test_an_instance_prepared_ahead_is_not_used_once_a_secret_has_changed(monkeypatch):
    # One worker: each call's tidying (which prepares the next instance with the secret as it was)
    # finishes before the next call starts, so the second call finds a prepared instance.
    single = Host(max_workers=1)
    grant = Grant(secret_env={"vowels": "EXOCLAW_TEST_VOWELS"})
    try:
        monkeypatch.setenv("EXOCLAW_TEST_VOWELS", "lo")
        first = await single.call(spec("count_vowels"), "count_vowels", b"Hello World", grant)
        monkeypatch.setenv("EXOCLAW_TEST_VOWELS", "o")
        second = await single.call(spec("count_vowels"), "count_vowels", b"Hello World", grant)
        third = await single.call(spec("count_vowels"), "count_vowels", b"Hello World", grant)
    finally:
        single.shutdown()
    assert [json.loads(o.output)["count"] for o in (first, second, third)] == [5, 2, 2]
    # The second call threw away the instance made with the old secret; the third found one made ahead.
    assert second.instantiate_ms > 0 and third.instantiate_ms == 0


@pytest.mark.asyncio
async def test_back_to_back_calls_share_one_copy_and_find_their_instance_made_ahead(host):
    # The copy a call used goes back to the pool when the call answers, while its worker still makes
    # the next instance; the next call takes that copy (and waits for the instance) rather than compiling.
    outputs = [await host.call(spec("echo"), "echo", b"x", Grant(timeout_ms=4321)) for _ in range(30)]
    assert [o.compile_ms > 0 for o in outputs] == [True] + [False] * 29
    assert all(o.instantiate_ms == 0 for o in outputs[1:]), "every later call found its instance made ahead"
    assert [o.output for o in outputs] == [b"x"] * 30


@pytest.mark.asyncio
async def test_concurrent_calls_compile_no_more_copies_than_run_at_once(host):
    grant = Grant(timeout_ms=4322, max_concurrency=3)
    together = await asyncio.gather(*(host.call(spec("echo"), "echo", str(i).encode(), grant) for i in range(12)))
    after = [await host.call(spec("echo"), "echo", b"x", grant) for _ in range(20)]
    assert [o.output for o in together] == [str(i).encode() for i in range(12)]
    assert 1 <= sum(o.compile_ms > 0 for o in together) <= 3
    assert not any(o.compile_ms > 0 for o in after)


@pytest.mark.asyncio
async def test_a_path_granted_call_sees_its_directories_as_they_are_when_it_runs(files):
    tmp_path, grant = files
    single = Host(max_workers=1)
    read = functools.partial(single.call, spec("read_file", wasi=True), "call", grant=grant)
    try:
        first = await read(mcp_call("read_file", path="/data/notes.txt"))
        # The one worker tidies after the first call before it takes the next: once this echo has
        # answered, anything made for read_file's next call has been made.
        await single.call(spec("echo"), "echo", b"x", Grant())
        (tmp_path / "data").rename(tmp_path / "old-data")
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "notes.txt").write_text("replaced\n")
        second = await read(mcp_call("read_file", path="/data/notes.txt"))
    finally:
        single.shutdown()
    assert mcp_text(first.output) == ("granted notes\n", False)
    assert mcp_text(second.output) == ("replaced\n", False)


STUCK = Grant(timeout_ms=20_000)


async def host_with_its_one_worker_stuck() -> tuple[Host, asyncio.Task]:
    """A host with one worker, busy in the loop plug-in (20 s timeout, grant STUCK) until the returned
    task is cancelled, and two more compiled copies of loop idle, so a further call of loop (which
    waits for the worker: loop already runs there) reaches the pool within its first step."""
    single = Host(max_workers=1)
    copies = [single._checkout(spec("loop"), STUCK) for _ in range(3)]
    for pool, copy, _ in copies:
        single._checkin(pool, copy)
    started, on_start = started_event()
    stuck = asyncio.create_task(single.call(spec("loop"), "spin", b"", STUCK, on_start=on_start))
    await asyncio.wait_for(started.wait(), 5)
    return single, stuck


async def unstick(stuck: asyncio.Task):
    """Free the one worker of host_with_its_one_worker_stuck: the stuck call ends cancelled."""
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(stuck, 5)


@pytest.mark.asyncio
async def test_cancelling_a_call_still_waiting_for_a_worker_drops_it_at_once(caplog):
    single, stuck = await host_with_its_one_worker_stuck()
    ran = []
    queued = asyncio.create_task(single.call(spec("loop"), "ok", b"", STUCK, on_start=lambda: ran.append("queued")))
    cancel = asyncio.Event()
    by_event = asyncio.create_task(single.call(spec("loop"), "ok", b"", STUCK, cancel=cancel,
                                              on_start=lambda: ran.append("by_event")))
    await asyncio.sleep(0)  # one loop turn: both tasks, scheduled first, queue their calls on the pool
    queued.cancel()
    cancel.set()
    # Both end without waiting for the stuck call (the 5 s bound is far below its 20 s timeout).
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(queued, 5)
    with pytest.raises(SandboxError) as caught:
        await asyncio.wait_for(by_event, 5)
    assert caught.value.kind == "cancelled" and "before it started" in caught.value.message
    await unstick(stuck)
    # The one worker has now passed the dropped calls: a later call answers, and they never ran.
    assert (await single.call(spec("echo"), "echo", b"after", Grant())).output == b"after"
    single.shutdown()
    assert ran == []
    assert not [r for r in caplog.records if r.levelname == "ERROR"], [r.getMessage() for r in caplog.records]


@pytest.mark.asyncio
async def test_a_call_still_queued_at_shutdown_ends_as_cancelled():
    single, stuck = await host_with_its_one_worker_stuck()
    queued = asyncio.create_task(single.call(spec("loop"), "ok", b"", STUCK))
    await asyncio.sleep(0)  # one loop turn: the task, scheduled first, queues its call on the pool
    single.shutdown()
    with pytest.raises(SandboxError) as caught:
        await asyncio.wait_for(queued, 5)
    assert caught.value.kind == "cancelled" and "shut down" in caught.value.message
    await unstick(stuck)


@pytest.mark.asyncio
async def test_cancelling_the_task_stops_a_running_plugin_at_once(host):
    started, on_start = started_event()
    grant = Grant(timeout_ms=20_000, max_concurrency=1)
    task = asyncio.create_task(host.call(spec("loop"), "spin", b"", grant, on_start=on_start))
    await asyncio.wait_for(started.wait(), 5)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - cancelled_at < 5, "the plug-in ran on towards its 20 s timeout"
    # The slot is free again (max_concurrency=1); the host fixture checks that the plug-in really stopped.
    fails_with_kind = await asyncio.wait_for(
        asyncio.gather(host.call(spec("loop"), "spin", b"", Grant(timeout_ms=100, max_concurrency=1)), return_exceptions=True), 5
    )
    assert fails_with_kind[0].kind == "timeout"


async def a_running_loop_call(host: Host) -> tuple[asyncio.Task, asyncio.Event]:
    """A call of the loop plug-in (20 s timeout) that has started, and the event that cancels it."""
    started, on_start = started_event()
    cancel = asyncio.Event()
    task = asyncio.create_task(host.call(spec("loop"), "spin", b"", Grant(timeout_ms=20_000), cancel=cancel, on_start=on_start))
    await asyncio.wait_for(started.wait(), 5)
    return task, cancel


@pytest.mark.asyncio
async def test_setting_the_cancel_event_gives_a_cancelled_error(host):
    task, cancel = await a_running_loop_call(host)
    cancel.set()
    with pytest.raises(SandboxError) as caught:
        await asyncio.wait_for(task, 5)
    assert caught.value.kind == "cancelled"


@pytest.mark.asyncio
async def test_a_task_cancelled_again_while_its_plugin_is_stopped_stays_cancelled(host):
    task, cancel = await a_running_loop_call(host)
    cancel.set()
    # Wait until the call is stopping its plug-in (a cancel reaches a call only after 20 ms of running).
    for _ in range(1000):
        if any(ticket.cancelled for ticket in host._workers._serving):
            break
        await asyncio.sleep(0)
    else:
        pytest.fail("setting the cancel event did not start stopping the call")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


@pytest.mark.asyncio
async def test_an_on_start_that_fails_loses_nothing(host, caplog):
    def on_start():
        raise RuntimeError("on_start broke")

    out = await asyncio.wait_for(host.call(spec("echo"), "echo", b"still answered", Grant(), on_start=on_start), 5)
    assert out.output == b"still answered"
    assert any("on_start" in r.getMessage() and r.exc_info for r in caplog.records)


@pytest.mark.asyncio
async def test_eight_stuck_calls_do_not_stop_a_quick_one(host):
    grant = Grant(timeout_ms=20_000, max_concurrency=8)
    started = [started_event() for _ in range(8)]
    loops = [asyncio.create_task(host.call(spec("loop"), "spin", b"", grant, on_start=on_start)) for _, on_start in started]
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event, _ in started)), 5)
    out = await asyncio.wait_for(host.call(spec("echo"), "echo", b"still here", Grant()), 5)
    assert out.output == b"still here"
    assert not any(task.done() for task in loops), "the echo answer must come while all eight loops still run"
    for task in loops:
        task.cancel()
    results = await asyncio.wait_for(asyncio.gather(*loops, return_exceptions=True), 5)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)


@pytest.mark.asyncio
async def test_per_plugin_concurrency_limit_queues_extra_calls(host):
    grant = Grant(timeout_ms=300, max_concurrency=2)
    running = 0
    peak = 0
    lock = asyncio.Lock()

    def on_start():
        nonlocal running, peak
        running += 1
        peak = max(peak, running)

    async def one():
        nonlocal running
        try:
            await host.call(spec("loop"), "spin", b"", grant, on_start=on_start)
        except SandboxError:
            pass
        async with lock:
            running -= 1

    await asyncio.gather(*(one() for _ in range(5)))
    assert peak == 2


@pytest.mark.asyncio
async def test_cancelling_one_call_leaves_a_concurrent_call_of_the_same_plugin_running(host):
    # Extism stops a call by bumping its compiled plugin's engine epoch; sharing one would stop both.
    grant = Grant(timeout_ms=20_000)
    (first_started, first_on_start), (second_started, second_on_start) = started_event(), started_event()
    first_cancel, second_cancel = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(host.call(spec("loop"), "spin", b"", grant, cancel=first_cancel, on_start=first_on_start))
    second = asyncio.create_task(host.call(spec("loop"), "spin", b"", grant, cancel=second_cancel, on_start=second_on_start))
    await asyncio.wait_for(asyncio.gather(first_started.wait(), second_started.wait()), 5)
    first_cancel.set()
    results = await asyncio.wait_for(asyncio.gather(first, return_exceptions=True), 5)
    assert results[0].kind == "cancelled"
    assert (await host.call(spec("echo"), "echo", b"round trip", Grant())).output == b"round trip"
    assert not second.done(), "the second call was stopped by the first one's cancel"
    second_cancel.set()
    results = await asyncio.wait_for(asyncio.gather(second, return_exceptions=True), 5)
    assert results[0].kind == "cancelled"


@pytest.mark.asyncio
async def test_a_cancel_right_at_the_start_of_a_call_is_never_lost(host):
    # Extism drops a cancel that lands while a call is starting, and the call then ignores its timeout.
    grant = Grant(timeout_ms=20_000, max_concurrency=1)
    for attempt in range(30):
        started, on_start = started_event()
        cancel = asyncio.Event()
        task = asyncio.create_task(host.call(spec("loop"), "spin", b"", grant, cancel=cancel, on_start=on_start))
        await asyncio.wait_for(started.wait(), 5)
        cancel.set()
        results = await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
        assert str(results[0]) == "cancelled: the call was cancelled while it ran", f"attempt {attempt}: {results[0]!r}"
