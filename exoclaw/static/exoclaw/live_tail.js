// The admin transcript's live tail: follows a session's runs over the gateway WebSocket as the signed-in
// staff user (the session cookie authenticates the handshake) and shows their text and tool calls as
// they stream. No build step, nothing fetched from elsewhere.
"use strict";

(function () {
  const root = document.getElementById("live-tail");
  if (!root || !window.WebSocket) return;
  const sessionId = root.dataset.sessionId;
  const TERMINAL = ["done", "error", "aborted"];
  const runs = new Map(); // run id -> what is shown of it, and the last seq shown
  let ws = null;
  let nextId = 1;
  let attempt = 0;
  const pending = new Map();

  function make(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const indicator = make("p", "live-indicator");
  const list = make("div", "live-runs");
  root.append(indicator, list);

  function setState(state, text) {
    indicator.dataset.state = state;
    indicator.textContent = text;
  }

  function refreshState() {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const going = [...runs.values()].some((r) => !r.finished);
    if (going) setState("live", "● live: a run of this session is streaming");
    else setState("idle", "○ watching this session: new runs will show here");
  }

  function call(method, params) {
    return new Promise((resolve, reject) => {
      if (!ws || ws.readyState !== WebSocket.OPEN) return reject(new Error("disconnected"));
      const id = nextId++;
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }

  function pretty(value) {
    return typeof value === "string" ? value : JSON.stringify(value, null, 2);
  }

  function addRun(runId) {
    if (runs.has(runId)) return runs.get(runId);
    const el = make("div", "message assistant live-run");
    el.dataset.runId = runId;
    el.dataset.state = "running";
    const who = make("div", "who");
    who.append("live · run ", make("code", "", runId));
    const status = make("span", "live-status", " · streaming…");
    who.append(status);
    const body = make("div", "live-body");
    el.append(who, body);
    list.append(el);
    const run = { el, body, status, text: null, lastSeq: 0, finished: false, calls: new Map() };
    runs.set(runId, run);
    refreshState();
    return run;
  }

  function appendText(run, t) {
    if (!run.text) {
      run.text = document.createTextNode("");
      const block = make("div", "text");
      block.append(run.text);
      run.body.append(block);
    }
    run.text.appendData(t);
  }

  function toolCall(run, ev) {
    run.text = null;
    const box = make("div", "tool-call");
    const head = make("div");
    head.append("Tool call ", make("strong", "", ev.name), " ", make("code", "", ev.call_id));
    const outcome = make("span", "badge running", "running");
    head.append(" · ", outcome);
    box.append(head, make("div", "", "Input:"), make("pre", "", pretty(ev.input || {})));
    run.body.append(box);
    run.calls.set(ev.call_id, { box, outcome });
  }

  function toolResult(run, ev) {
    const call = run.calls.get(ev.call_id);
    if (!call) return;
    const ok = !ev.is_error;
    call.outcome.className = "badge " + (ok ? "ok" : "error");
    call.outcome.textContent = ok ? "ok" : ev.error_kind || "error";
    if (!ok) call.box.classList.add("failed");
    const took = ev.duration_ms == null ? "" : ` (${ev.duration_ms.toFixed(1)} ms)`;
    call.box.append(make("div", "", (ok ? "Output" : "Error") + took + ":"), make("pre", ok ? "" : "error", pretty(ev.content)));
  }

  function finish(run, state, detail) {
    if (run.finished) return;
    run.finished = true;
    run.el.dataset.state = state;
    run.status.textContent = ` · finished: ${detail}. `;
    const reload = make("a", "live-reload", "Reload the transcript");
    reload.href = location.pathname + location.search;
    run.status.append(reload);
    refreshState();
  }

  function onEvent(ev) {
    const run = runs.get(ev.run_id);
    if (!run || ev.seq <= run.lastSeq) return;
    if (ev.seq > run.lastSeq + 1) {
      // Something was skipped: ask again for everything after the last event shown.
      if (!run.resubscribing) subscribe(ev.run_id);
      return;
    }
    run.lastSeq = ev.seq;
    if (ev.type === "delta") appendText(run, ev.text || "");
    else if (ev.type === "tool_call") toolCall(run, ev);
    else if (ev.type === "tool_result") toolResult(run, ev);
    else if (ev.type === "done") finish(run, ev.stop_reason === "aborted" ? "aborted" : "done", ev.stop_reason || "done");
    else if (ev.type === "error") finish(run, "error", `error, ${ev.message || ev.reason}`);
  }

  async function subscribe(runId) {
    const run = addRun(runId);
    if (run.finished) return;
    run.resubscribing = true;
    try {
      const answer = await call("chat.subscribe", { run_id: runId, after_seq: run.lastSeq });
      // The run's events may have overtaken this answer and ended it already.
      if (run.finished) return;
      if (answer.status === "queued") run.status.textContent = " · queued behind the session's current run…";
      else if (answer.status === "running") run.status.textContent = " · streaming…";
      else if (TERMINAL.includes(answer.status)) finish(run, answer.status, answer.status);
    } catch (e) {
      run.status.textContent = ` · cannot follow: ${e.message}`;
    } finally {
      run.resubscribing = false;
    }
  }

  async function onOpen() {
    attempt = 0;
    try {
      const followed = await call("sessions.follow", { session_key: sessionId });
      refreshState();
      const ids = new Set(followed.runs.map((r) => r.run_id));
      for (const [runId, run] of runs) if (!run.finished) ids.add(runId); // cut off by a reconnect
      for (const runId of ids) subscribe(runId);
    } catch (e) {
      setState("failed", `The live tail is not available: ${e.message}`);
    }
  }

  function receive(data) {
    let m;
    try {
      m = JSON.parse(data);
    } catch (e) {
      return;
    }
    if (m.method === "chat.event" && m.params) return onEvent(m.params);
    if (m.method === "sessions.run" && m.params) {
      if (m.params.session_id === sessionId) subscribe(m.params.run_id);
      return;
    }
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.error) p.reject(new Error(m.error.message));
    else p.resolve(m.result);
  }

  function connect() {
    ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    setState("connecting", "connecting to the gateway…");
    ws.onopen = onOpen;
    ws.onmessage = (m) => receive(m.data);
    ws.onclose = (ev) => {
      for (const p of pending.values()) p.reject(new Error("disconnected"));
      pending.clear();
      if (ev.code === 4401 || ev.code === 4429) {
        setState("failed", "The gateway refused this page's connection: sign in to the admin again.");
        return;
      }
      const delay = Math.min(8000, 500 * 2 ** attempt++);
      setState("offline", `disconnected from the gateway; reconnecting in ${Math.ceil(delay / 1000)} s…`);
      setTimeout(connect, delay);
    };
  }

  root.hidden = false;
  connect();
})();
