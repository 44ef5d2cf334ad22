// The exoclaw web chat: one JSON-RPC WebSocket to the gateway, no build step, nothing fetched from elsewhere.
"use strict";

(function () {
  const REASONS = JSON.parse(document.getElementById("reasons").textContent);
  const TOKEN_KEY = "exoclaw.token"; // sessionStorage: forgotten when the tab closes
  const CURRENT_KEY = "exoclaw.current"; // localStorage: the conversation to reopen after a reload
  const RUN_KEY = "exoclaw.run"; // sessionStorage: the reply being written, to follow again after a reload
  const HISTORY_PAGE = 50;
  const CLOSE_UNAUTHORIZED = 4401; // the gateway's close codes for a refused connection
  const CLOSE_THROTTLED = 4429;
  const AUTH_REASONS = ["auth_required", "token_invalid", "token_disabled", "token_expired", "missing_scope"];
  const $ = (id) => document.getElementById(id);

  function words(reason, message) {
    return REASONS[reason] || message || `The server answered with an error (${reason || "no reason"}).`;
  }

  function randomId() {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function make(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function pretty(value) {
    if (typeof value === "string") return value;
    return JSON.stringify(value, null, 2);
  }

  function resultText(content) {
    // A tool result is a string, or a list of content blocks as in the Anthropic and MCP formats.
    if (Array.isArray(content)) return content.map((b) => (b && b.text) || "").join("");
    return content == null ? "" : pretty(content);
  }

  class RpcError extends Error {
    constructor(error) {
      const reason = error && error.data && error.data.reason;
      super(words(reason, error && error.message));
      this.code = error && error.code;
      this.reason = reason;
    }
  }

  const disconnected = () => new RpcError({ data: { reason: "disconnected" } });

  // One WebSocket that reconnects with backoff; requests are matched to responses by id.
  class Gateway {
    constructor({ onEvent, onOpen, onState }) {
      this.onEvent = onEvent;
      this.onOpen = onOpen;
      this.onState = onState;
      this.nextId = 1;
      this.pending = new Map();
      this.attempt = 0;
      this.ws = null;
      this.timer = null;
    }

    url() {
      return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
    }

    connect() {
      clearTimeout(this.timer);
      const ws = new WebSocket(this.url());
      this.ws = ws;
      this.closingReason = null;
      this.onState("connecting");
      ws.onopen = async () => {
        const token = sessionStorage.getItem(TOKEN_KEY);
        if (token) {
          try {
            await this.call("auth", { token });
          } catch (e) {
            if (e.reason === "disconnected") return;
            // The connection stays usable if a staff sign-in or the loopback exemption covers it.
            this.onState("refused", e);
          }
        }
        this.attempt = 0;
        this.onState("open");
        this.onOpen();
      };
      ws.onmessage = (m) => this.receive(m.data);
      ws.onclose = (ev) => {
        if (this.ws !== ws) return;
        this.failPending();
        if (ev.code === CLOSE_UNAUTHORIZED || ev.code === CLOSE_THROTTLED) {
          // Retrying cannot help until the user signs in or gives another token.
          const reason = this.closingReason || ev.reason || "auth_required";
          this.onState("refused", new RpcError({ data: { reason } }));
          return;
        }
        const delay = Math.min(8000, 500 * 2 ** this.attempt++) * (0.75 + Math.random() * 0.5);
        this.onState("closed", { code: ev.code, reason: ev.reason, delay });
        this.timer = setTimeout(() => this.connect(), delay);
      };
    }

    reconnectNow() {
      const old = this.ws;
      this.ws = null;
      this.failPending();
      if (old) old.close();
      this.attempt = 0;
      this.connect();
    }

    failPending() {
      for (const p of this.pending.values()) p.reject(disconnected());
      this.pending.clear();
    }

    receive(data) {
      let message;
      try {
        message = JSON.parse(data);
      } catch (e) {
        return;
      }
      for (const m of Array.isArray(message) ? message : [message]) {
        if (!m || typeof m !== "object") continue;
        if (m.method === "chat.event" && m.params) {
          this.onEvent(m.params);
          continue;
        }
        if (m.method === "gateway.closing" && m.params) {
          this.closingReason = m.params.reason; // browsers may not see the close reason itself
          continue;
        }
        const p = this.pending.get(m.id);
        if (!p) continue;
        this.pending.delete(m.id);
        if (m.error) p.reject(new RpcError(m.error));
        else p.resolve(m.result);
      }
    }

    call(method, params) {
      return new Promise((resolve, reject) => {
        if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return reject(disconnected());
        const id = this.nextId++;
        this.pending.set(id, { resolve, reject });
        this.ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params: params || {} }));
      });
    }
  }

  // One assistant reply in the transcript: streamed text and tool cards, in the order they came.
  class Reply {
    constructor(agent) {
      this.el = make("article", "msg assistant");
      this.el.dataset.state = "running";
      this.who = make("div", "msg-who", agent || "assistant");
      this.body = make("div", "msg-body");
      this.meta = make("div", "msg-meta");
      this.el.append(this.who, this.body, this.meta);
      this.textNode = null;
      this.cards = new Map();
    }

    setAgent(agent) {
      if (agent) this.who.textContent = agent;
    }

    apply(ev) {
      if (ev.type === "delta") this.text(ev.text || "");
      else if (ev.type === "tool_call") this.toolCall(ev.call_id, ev.name, ev.input);
      else if (ev.type === "tool_result") this.toolResult(ev);
      else if (ev.type === "done") this.finish(ev);
      else if (ev.type === "error") this.fail(words(ev.reason, ev.message));
    }

    text(t) {
      if (!t) return;
      if (!this.textNode) {
        const span = make("span", "text");
        this.textNode = document.createTextNode("");
        span.append(this.textNode);
        this.body.append(span);
      }
      this.textNode.appendData(t);
    }

    toolCall(callId, name, input) {
      this.textNode = null;
      const card = make("details", "tool");
      card.dataset.callId = callId;
      card.dataset.status = "running";
      const summary = make("summary");
      const status = make("span", "tool-status", "running…");
      const preview = make("span", "tool-preview");
      const time = make("span", "tool-time");
      summary.append(make("span", "tool-name", name || "tool"), status, preview, time);
      const output = make("pre", "tool-output");
      const error = make("p", "tool-error");
      error.hidden = true;
      card.append(
        summary,
        make("div", "tool-label", "Input"),
        make("pre", "tool-input", pretty(input === undefined ? {} : input)),
        make("div", "tool-label", "Output"),
        output,
        error,
      );
      this.body.append(card);
      this.cards.set(callId, { card, status, preview, time, output, error });
    }

    toolResult(ev) {
      if (!this.cards.has(ev.call_id)) this.toolCall(ev.call_id, ev.name, undefined);
      const c = this.cards.get(ev.call_id);
      const text = resultText(ev.content);
      c.output.textContent = text;
      c.card.dataset.status = ev.is_error ? "error" : "ok";
      c.status.textContent = ev.is_error ? "failed" : "→";
      c.preview.textContent = text.length > 60 ? text.slice(0, 59) + "…" : text;
      if (typeof ev.duration_ms === "number") c.time.textContent = `${Math.round(ev.duration_ms)} ms`;
      if (ev.is_error) {
        c.error.hidden = false;
        // The sandbox's error text already starts with its kind ("host_denied: …"): say it once.
        const kind = ev.error_kind && !text.startsWith(`${ev.error_kind}:`) ? `${ev.error_kind}: ` : "";
        c.error.textContent = kind + text;
      }
    }

    finish(ev) {
      const stop = ev.stop_reason || "done";
      this.el.dataset.state = stop === "aborted" ? "aborted" : "done";
      this.el.dataset.stopReason = stop;
      const parts = [];
      if (stop === "aborted") parts.push("stopped");
      else if (stop === "max_tool_rounds") parts.push(words("max_tool_rounds"));
      const t = ev.timings || {};
      const u = ev.usage || {};
      if (typeof t.total_ms === "number") parts.push(`${Math.round(t.total_ms)} ms`);
      if (u.output_tokens !== undefined) parts.push(`${u.input_tokens || 0} → ${u.output_tokens} tokens`);
      this.meta.textContent = parts.join(" · ");
      this.closeRunningCards();
    }

    fail(message) {
      this.el.dataset.state = "error";
      const err = make("p", "msg-error", message);
      this.body.append(err);
      this.closeRunningCards();
    }

    closeRunningCards() {
      for (const c of this.cards.values()) {
        if (c.card.dataset.status === "running") {
          c.card.dataset.status = "error";
          c.status.textContent = "no result";
        }
      }
    }
  }

  const ui = {
    messages: $("messages"),
    input: $("input"),
    send: $("send"),
    abort: $("abort"),
    agent: $("agent"),
    channel: $("channel"),
    peer: $("peer"),
    conn: $("conn"),
    notice: $("notice"),
    sessionList: $("session-list"),
    sessionKey: $("session-key"),
    authPanel: $("auth-panel"),
    authMessage: $("auth-message"),
    loadEarlier: $("load-earlier"),
    empty: $("empty"),
    emptyAgent: $("empty-agent"),
  };

  const state = {
    current: loadCurrent(), // {key, agent, channel, account, peer} of the open conversation
    runs: new Map(), // run_id -> {lastSeq, reply, finished, held: Map(seq -> event), resubscribing}
    early: new Map(), // events for a run whose chat.send answer has not arrived yet
    active: null, // run_id of the reply being written
    unsent: null, // a chat.send cut off by a dropped connection: resent with the same idempotency key
    history: [], // messages of the open conversation, oldest first
    hasMore: false,
    restored: false,
    refusal: null, // why the gateway refused our token or connection, shown until the next attempt
  };

  function loadCurrent() {
    try {
      return JSON.parse(localStorage.getItem(CURRENT_KEY)) || null;
    } catch (e) {
      return null;
    }
  }

  function saveCurrent() {
    if (state.current) localStorage.setItem(CURRENT_KEY, JSON.stringify(state.current));
    else localStorage.removeItem(CURRENT_KEY);
    ui.sessionKey.textContent = state.current && state.current.key ? state.current.key : "";
    for (const li of ui.sessionList.children) {
      li.classList.toggle("current", !!state.current && li.dataset.key === state.current.key);
    }
  }

  function notice(message) {
    ui.notice.textContent = message || "";
    ui.notice.hidden = !message;
  }

  let scrollPending = false;
  function scrollDown() {
    // Once per frame, however many events arrive in it: reading scrollHeight forces a layout.
    if (scrollPending) return;
    scrollPending = true;
    requestAnimationFrame(() => {
      scrollPending = false;
      ui.messages.scrollTop = ui.messages.scrollHeight;
    });
  }

  function addUser(text) {
    const el = make("article", "msg user");
    el.append(make("div", "msg-body", text));
    ui.messages.append(el);
    ui.empty.hidden = true;
    scrollDown();
    return el;
  }

  function addReply(agent) {
    const reply = new Reply(agent);
    ui.messages.append(reply.el);
    ui.empty.hidden = true;
    scrollDown();
    return reply;
  }

  function plural(n, one, many) {
    return `${n} ${n === 1 ? one : many}`;
  }

  // An empty conversation says who will answer (the chosen agent, or the one routing picks for this
  // channel and peer) and offers a first thing to try.
  let emptyAsked = 0;
  async function showEmpty() {
    ui.empty.hidden = !!ui.messages.querySelector(".msg");
    if (ui.empty.hidden) return;
    const asked = ++emptyAsked;
    let agent = ui.agent.value;
    let why = "you chose it";
    if (!agent) {
      try {
        agent = (await gw.call("routing.resolve", { channel: ui.channel.value.trim(), peer: ui.peer.value.trim() })).agent;
        why = "routing picks it for this channel and peer";
      } catch (e) {
        agent = "";
      }
    }
    if (asked !== emptyAsked) return; // a newer question was asked meanwhile
    ui.emptyAgent.textContent = agent
      ? `The agent ${agent} answers here (${why}).`
      : "No agent answers this channel and peer yet: pick one above, or add a binding in the admin.";
  }

  function setBusy(runId) {
    state.active = runId;
    ui.send.hidden = !!runId;
    ui.abort.hidden = !runId;
    ui.abort.disabled = false;
  }

  // --- runs and their events ---------------------------------------------------------------------

  function track(runId, reply, lastSeq) {
    const run = { runId, lastSeq: lastSeq || 0, reply, finished: false, held: new Map(), resubscribing: false };
    state.runs.set(runId, run);
    for (const ev of state.early.get(runId) || []) onEvent(ev);
    state.early.delete(runId);
    return run;
  }

  function onEvent(ev) {
    const run = state.runs.get(ev.run_id);
    if (!run) {
      if (state.early.size < 32) state.early.set(ev.run_id, [...(state.early.get(ev.run_id) || []), ev]);
      return;
    }
    if (run.finished || ev.seq <= run.lastSeq) return; // a replay overlapping what we have
    run.held.set(ev.seq, ev);
    // Apply in seq order; a hole means events were lost, so ask for everything after the last one we have.
    while (run.held.has(run.lastSeq + 1)) {
      const next = run.held.get(run.lastSeq + 1);
      run.held.delete(next.seq);
      run.lastSeq = next.seq;
      run.reply.apply(next);
      if (next.type === "done" || next.type === "error") return finished(run);
    }
    scrollDown();
    if (run.held.size && !run.resubscribing) resubscribe(run);
  }

  function finished(run) {
    run.finished = true;
    run.held.clear();
    if (state.active === run.runId) setBusy(null);
    sessionStorage.removeItem(RUN_KEY);
    scrollDown();
    refreshSessions();
    if (run.reloadHistory) loadHistory();
  }

  async function resubscribe(run) {
    run.resubscribing = true;
    try {
      await gw.call("chat.subscribe", { run_id: run.runId, after_seq: run.lastSeq });
    } catch (e) {
      if (e.reason !== "disconnected") {
        run.reply.fail(e.message);
        finished(run);
      }
    } finally {
      run.resubscribing = false;
    }
  }

  async function send(text) {
    const params = { text, idempotency_key: randomId(), ...routeParams() };
    notice("");
    const userEl = addUser(text);
    const reply = addReply(params.agent);
    setBusy("pending");
    await dispatch(params, reply, userEl);
  }

  async function dispatch(params, reply, userEl) {
    let sent;
    try {
      sent = await gw.call("chat.send", params);
    } catch (e) {
      if (e.reason === "disconnected") {
        // The gateway may or may not have started the run: the same idempotency key makes the retry safe.
        state.unsent = { params, reply, userEl };
        reply.meta.textContent = "waiting for the connection…";
        return;
      }
      setBusy(null);
      reply.el.remove();
      userEl.remove();
      ui.input.value = params.text; // nothing the user typed is lost
      notice(e.message);
      return;
    }
    state.unsent = null;
    reply.meta.textContent = sent.queued ? "queued behind the reply already running…" : "";
    reply.setAgent(sent.agent);
    if (!state.current || state.current.key !== sent.session_key) {
      state.current = { ...routeFromParams(params), agent: sent.agent, key: sent.session_key };
    }
    saveCurrent();
    setBusy(sent.run_id);
    sessionStorage.setItem(RUN_KEY, sent.run_id);
    reply.el.dataset.runId = sent.run_id;
    track(sent.run_id, reply, 0);
  }

  function routeParams() {
    const params = {};
    if (ui.agent.value) params.agent = ui.agent.value;
    if (ui.channel.value.trim()) params.channel = ui.channel.value.trim();
    if (ui.peer.value.trim()) params.peer = ui.peer.value.trim();
    if (state.current && state.current.account) params.account = state.current.account;
    return params;
  }

  function routeFromParams(p) {
    return { channel: p.channel || "", account: p.account || "", peer: p.peer || "" };
  }

  async function abort() {
    if (!state.active || state.active === "pending") return;
    ui.abort.disabled = true;
    try {
      await gw.call("chat.abort", { run_id: state.active });
    } catch (e) {
      ui.abort.disabled = false;
      notice(e.message);
    }
  }

  // --- conversations --------------------------------------------------------------------------------

  async function refreshSessions() {
    let result;
    try {
      result = await gw.call("sessions.list", { limit: 50 });
    } catch (e) {
      if (e.reason !== "disconnected") notice(e.message);
      return;
    }
    ui.sessionList.replaceChildren();
    for (const s of result.sessions) {
      const li = make("li");
      li.dataset.key = s.key;
      const button = make("button", "session");
      button.type = "button";
      button.append(
        make("span", "session-title", s.title || s.key),
        make("small", null, [s.agent, s.channel, plural(s.message_count, "message", "messages")].filter(Boolean).join(" · ")),
      );
      button.addEventListener("click", () => openSession(s));
      li.append(button);
      ui.sessionList.append(li);
    }
    saveCurrent();
  }

  function clearTranscript() {
    for (const node of [...ui.messages.children]) if (node !== ui.loadEarlier && node !== ui.empty) node.remove();
    ui.empty.hidden = false;
  }

  function openSession(s) {
    if (state.active) return notice("Wait for the reply to finish, or stop it, before switching conversations.");
    state.current = { key: s.key, agent: s.agent, channel: s.channel || "", account: s.account || "", peer: s.peer || "" };
    showRoute();
    saveCurrent();
    document.body.classList.remove("show-sessions");
    loadHistory();
  }

  function newConversation() {
    if (state.active) return notice("Wait for the reply to finish, or stop it, before starting another conversation.");
    state.current = null;
    state.history = [];
    saveCurrent();
    ui.channel.value = "web";
    ui.peer.value = "web-" + randomId().slice(0, 8);
    clearTranscript();
    ui.loadEarlier.hidden = true;
    document.body.classList.remove("show-sessions");
    showEmpty();
    ui.input.focus();
  }

  function showRoute() {
    const c = state.current;
    ui.channel.value = c.channel;
    ui.peer.value = c.peer;
    if (c.agent && ![...ui.agent.options].some((o) => o.value === c.agent)) ui.agent.append(new Option(c.agent, c.agent));
    ui.agent.value = c.agent || "";
  }

  async function loadHistory(older) {
    if (!state.current || !state.current.key) return;
    const params = { session_key: state.current.key, limit: HISTORY_PAGE };
    if (older && state.history.length) params.before_seq = state.history[0].seq;
    let result;
    try {
      result = await gw.call("sessions.history", params);
    } catch (e) {
      if (e.reason !== "disconnected") notice(e.message);
      return;
    }
    state.history = older ? [...result.messages, ...state.history] : result.messages;
    state.hasMore = !!result.has_more;
    renderHistory();
  }

  function renderHistory() {
    clearTranscript();
    ui.loadEarlier.hidden = !state.hasMore;
    let reply = null;
    let replyRun;
    for (const m of state.history) {
      const blocks = Array.isArray(m.content) ? m.content : [{ type: "text", text: String(m.content) }];
      const isToolResults = blocks.length && blocks.every((b) => b.type === "tool_result");
      if (m.role === "user" && !isToolResults) {
        addUser(blocks.filter((b) => b.type === "text").map((b) => b.text).join("\n"));
        reply = null;
        continue;
      }
      if (!reply || (m.run_id && m.run_id !== replyRun)) {
        reply = addReply(state.current.agent);
        reply.el.dataset.state = "done";
        reply.el.dataset.runId = m.run_id || "";
        replyRun = m.run_id;
      }
      for (const b of blocks) {
        if (b.type === "text") reply.text(b.text);
        else if (b.type === "tool_use") reply.toolCall(b.id, b.name, b.input);
        else if (b.type === "tool_result") reply.toolResult({ call_id: b.tool_use_id, content: b.content, is_error: b.is_error });
      }
    }
    scrollDown();
  }

  async function loadAgents() {
    const result = await gw.call("agents.list", {});
    const agents = Array.isArray(result) ? result : result.agents || [];
    const chosen = ui.agent.value;
    ui.agent.replaceChildren(new Option("routing decides", ""));
    for (const a of agents) {
      const name = typeof a === "string" ? a : a.name;
      if (a.enabled === false) continue;
      ui.agent.append(new Option(a.provider ? `${name} (${a.provider})` : name, name));
    }
    if (chosen && ![...ui.agent.options].some((o) => o.value === chosen)) ui.agent.append(new Option(chosen, chosen));
    ui.agent.value = chosen;
  }

  // --- connection life cycle ------------------------------------------------------------------------

  async function showPrincipal() {
    try {
      const status = await gw.call("status", {});
      $("principal").textContent = status.principal ? `as ${status.principal}` : "";
    } catch (e) {
      $("principal").textContent = "";
    }
  }

  async function onOpen() {
    showPrincipal();
    try {
      await loadAgents();
      if (!state.refusal) ui.authPanel.hidden = true;
    } catch (e) {
      if (e.reason === "disconnected") return;
      if (AUTH_REASONS.includes(e.reason)) return showAuth(state.refusal || e.message);
      notice(e.message);
    }
    if (state.unsent) {
      const { params, reply, userEl } = state.unsent;
      await dispatch(params, reply, userEl);
    }
    // Pick up every reply that was still being written when the connection dropped.
    for (const run of state.runs.values()) if (!run.finished) resubscribe(run);
    if (!state.restored) {
      // First connection since the page loaded: reopen the conversation it showed before.
      state.restored = true;
      if (state.current) {
        showRoute();
        await loadHistory();
        await resumeAfterReload();
      }
    }
    showEmpty();
    refreshSessions();
  }

  async function resumeAfterReload() {
    // A reload in the middle of a reply: follow it from its first event if it is still running.
    const runId = sessionStorage.getItem(RUN_KEY);
    if (!runId || state.runs.has(runId)) return;
    let status;
    try {
      status = await gw.call("chat.subscribe", { run_id: runId, after_seq: 0 });
    } catch (e) {
      sessionStorage.removeItem(RUN_KEY);
      return;
    }
    if (status && (status.status === "running" || status.status === "queued")) {
      const reply = addReply(state.current.agent);
      reply.el.dataset.runId = runId;
      setBusy(runId);
      // The history read above may predate even the message that started this run; read it again at the end.
      track(runId, reply, 0).reloadHistory = true;
    } else {
      sessionStorage.removeItem(RUN_KEY);
    }
  }

  function showAuth(message) {
    ui.authMessage.textContent = message;
    ui.authPanel.hidden = false;
  }

  function onState(kind, detail) {
    if (kind === "refused") {
      state.refusal = detail.message;
      sessionStorage.removeItem(TOKEN_KEY); // a refused token is not retried on every reconnect
      showAuth(detail.message);
      if (gw.ws && gw.ws.readyState === WebSocket.OPEN) return;
      ui.conn.dataset.state = kind;
      ui.conn.textContent = "not signed in";
      return;
    }
    if (kind === "connecting") state.refusal = null;
    ui.conn.dataset.state = kind;
    if (kind === "open") ui.conn.textContent = "connected";
    else if (kind === "connecting") ui.conn.textContent = "connecting…";
    else if (kind === "closed") ui.conn.textContent = `reconnecting in ${Math.ceil(detail.delay / 1000)} s…`;
  }

  const gw = new Gateway({ onEvent, onOpen, onState });

  // --- wiring ---------------------------------------------------------------------------------------

  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = ui.input.value.trim();
    if (!text || state.active) return;
    ui.input.value = "";
    send(text);
  });
  ui.input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("composer").requestSubmit();
    }
  });
  ui.abort.addEventListener("click", abort);
  for (const field of [ui.agent, ui.channel, ui.peer]) field.addEventListener("change", showEmpty);
  $("try-tool").addEventListener("click", () => {
    ui.input.value = '/tool calc {"expr": "6*7"}';
    ui.input.focus();
  });
  ui.loadEarlier.addEventListener("click", () => loadHistory(true));
  $("new-chat").addEventListener("click", newConversation);
  $("toggle-sessions").addEventListener("click", () => {
    const shown = document.body.classList.toggle("show-sessions");
    $("toggle-sessions").setAttribute("aria-expanded", String(shown));
  });
  $("token-button").addEventListener("click", () => {
    ui.authPanel.hidden = !ui.authPanel.hidden;
  });
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token-input").value = "";
    ui.authMessage.textContent = "Connecting with the token…";
    gw.reconnectNow();
  });
  $("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    gw.reconnectNow();
  });

  if (state.current) showRoute();
  else ui.peer.value = "web-" + randomId().slice(0, 8);
  saveCurrent();
  gw.connect();
})();
