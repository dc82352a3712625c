/*
 * Agent desk: the conversation's ranked suggestions, live.
 *
 * Reads its settings from the JSON block #assist-config, removes the token from the address
 * bar, follows GET /v1/conversations/{id}/events (Server-Sent Events) and shows each ranked
 * batch newest on top, one card per suggestion id (a re-delivered suggestion updates its card
 * and moves it up). Card buttons send POST /v1/feedback; the ask box sends POST
 * /v1/suggestions. No dependencies, no build step; all data goes in through textContent.
 */
"use strict";
(function () {
  const config = JSON.parse(document.getElementById("assist-config").textContent);
  const FEEDBACK_AGENT = config.agentId || "desk-agent";
  const SNIPPET_CHARS = 180;
  const REOPEN_MS = 3000;
  const RETRY_MS = [1000, 2000, 4000, 8000, 15000];
  const $ = (selector, root) => (root || document).querySelector(selector);
  const connState = $("[data-testid=connection-state]");
  const cardList = $("[data-testid=cards]");
  const emptyState = $("[data-testid=empty-state]");
  const askForm = $("[data-testid=ask-form]");
  const askInput = $("[data-testid=ask-input]");
  const askStatus = $("[data-testid=ask-status]");
  const template = document.getElementById("card-template");
  const cards = new Map(); // suggestion id -> {el, suggestion, requestId}
  const displayed = new Set(); // ids whose `displayed` was sent by this page
  const dismissed = new Set();
  const pendingAsks = new Set(); // request ids of the agent's own questions
  let source = null;
  let lastEventId = "";
  let everLive = false;
  let batches = 0; // ranked batches received (exposed for tests as data-batches)

  // The token came in the URL (an interaction widget cannot send headers): drop it from there.
  const url = new URL(window.location.href);
  if (url.searchParams.has("access_token")) {
    url.searchParams.delete("access_token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }

  async function api(method, path, body) {
    const response = await fetch(path, {
      method: method,
      headers: { Authorization: "Bearer " + config.token, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (!response.ok) {
      const error = (data && data.error) || {};
      const err = new Error(error.message || "HTTP " + response.status);
      err.code = error.code || "http_" + response.status;
      err.status = response.status;
      throw err;
    }
    return data;
  }

  // --- connection --------------------------------------------------------------------------
  const STATE_TEXT = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…" };
  function setState(state) {
    connState.dataset.state = state;
    connState.textContent = STATE_TEXT[state];
  }

  function connect() {
    setState(everLive ? "reconnecting" : "connecting");
    const params = new URLSearchParams({ access_token: config.token });
    // A new EventSource sends no Last-Event-ID header; the server also reads this parameter.
    if (lastEventId) params.set("lastEventId", lastEventId);
    const feedPath = "/v1/conversations/" + encodeURIComponent(config.conversationId) + "/events";
    const es = new EventSource(feedPath + "?" + params.toString());
    source = es;
    es.onopen = () => { everLive = true; setState("live"); };
    es.addEventListener("suggestions", onSuggestions);
    es.onerror = () => {
      if (source !== es) return;
      setState("reconnecting");
      // EventSource retries by itself unless it gave up (e.g. an HTTP error status).
      if (es.readyState === EventSource.CLOSED) {
        es.close();
        source = null;
        window.setTimeout(connect, REOPEN_MS);
      }
    };
  }

  function onSuggestions(event) {
    let batch;
    try { batch = JSON.parse(event.data); } catch (_) { return; }
    if (event.lastEventId) lastEventId = event.lastEventId;
    cardList.dataset.batches = String((batches += 1));
    const list = (batch.suggestions || []).slice().sort((a, b) => a.rank - b.rank);
    // Newest batch on top, in rank order: insert the lowest rank first.
    for (let i = list.length - 1; i >= 0; i -= 1) upsert(list[i], batch.request_id, batch.ts);
    if (pendingAsks.delete(batch.request_id)) {
      askStatus.textContent = list.length
        ? list.length + " suggestion(s) for your question."
        : "No new suggestions for that question.";
    }
    emptyState.hidden = cards.size > 0;
  }

  // --- cards -------------------------------------------------------------------------------
  function upsert(suggestion, requestId, ts) {
    if (dismissed.has(suggestion.id)) return;
    let entry = cards.get(suggestion.id);
    if (!entry) {
      const el = template.content.firstElementChild.cloneNode(true);
      entry = { el: el, suggestion: suggestion, requestId: requestId, expanded: false };
      el.dataset.suggestionId = suggestion.id;
      el.addEventListener("click", (e) => onCardClick(entry, e));
      cards.set(suggestion.id, entry);
    }
    entry.suggestion = suggestion;
    entry.requestId = requestId;
    fill(entry, ts);
    cardList.prepend(entry.el);
    if (!displayed.has(suggestion.id)) {
      displayed.add(suggestion.id);
      sendFeedback(entry, "displayed");
    }
  }

  function field(entry, name) { return entry.el.querySelector("[data-field=" + name + "]"); }

  function fill(entry, ts) {
    const s = entry.suggestion;
    entry.el.dataset.rank = String(s.rank);
    entry.el.dataset.score = String(s.score);
    entry.el.dataset.requestId = entry.requestId || "";
    field(entry, "title").textContent = s.title;
    field(entry, "score").textContent = s.score.toFixed(3);
    field(entry, "sources").textContent = (s.knowledge_source_ids || []).join(", ");
    field(entry, "when").textContent = ts ? " · ranked " + new Date(ts).toLocaleTimeString() : "";
    renderSnippet(entry);
    const why = s.why || {};
    const rows = field(entry, "why-rows");
    rows.replaceChildren();
    const inputs = { confidence: why.confidence, skill: why.skill_bonus, feedback: why.feedback_signal };
    for (const name of Object.keys(inputs)) {
      const tr = document.createElement("tr");
      for (const v of [name, inputs[name], (why.weights || {})[name], (why.contributions || {})[name]]) {
        const td = document.createElement("td");
        td.textContent = typeof v === "number" ? v.toFixed(3) : String(v === undefined ? "–" : v);
        tr.append(td);
      }
      rows.append(tr);
    }
    const skills = why.matched_skills || [];
    field(entry, "why-skills").textContent =
      "Matched skills: " + (skills.length ? skills.join(", ") : "none");
    field(entry, "why-history").textContent = "Feedback history: accepted in " +
      (why.feedback_accepted || 0) + " of " + (why.feedback_shown || 0) + " conversations";
  }

  function renderSnippet(entry) {
    const content = entry.suggestion.content || "";
    const long = content.length > SNIPPET_CHARS;
    field(entry, "content").textContent =
      long && !entry.expanded ? content.slice(0, SNIPPET_CHARS).trimEnd() + "…" : content;
    entry.el.querySelector("[data-action=open]").textContent = entry.expanded ? "Opened" : "Open";
  }

  function showMessage(entry, text, kind) {
    const message = field(entry, "message");
    message.textContent = text;
    message.hidden = !text;
    message.dataset.kind = kind || "error";
  }

  const sleep = (ms) => new Promise((resolve) => window.setTimeout(resolve, ms));

  // Network failures and 5xx are retried (the web tier may be restarting); 4xx are final.
  async function sendFeedback(entry, action) {
    const body = {
      conversation_id: config.conversationId,
      suggestion_id: entry.suggestion.id,
      agent_id: FEEDBACK_AGENT,
      action: action,
    };
    if (entry.requestId) body.request_id = entry.requestId;
    for (let attempt = 0; ; attempt += 1) {
      try {
        await api("POST", "/v1/feedback", body);
        if (attempt) showMessage(entry, "");
        return true;
      } catch (err) {
        const transient = !err.status || err.status >= 500 || err.status === 429;
        if (transient && attempt < RETRY_MS.length) {
          if (action !== "displayed") showMessage(entry, "Connection problem; retrying…", "info");
          await sleep(RETRY_MS[attempt]);
          continue;
        }
        showMessage(entry, err.code === "unknown_suggestion"
          ? "The server no longer knows this suggestion in this conversation; " + action +
            " was not recorded."
          : "Could not record " + action + ": " + err.message);
        return false;
      }
    }
  }

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (_) {
      // Clipboard API refused (no permission in this frame): the selection fallback.
      const area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "offscreen";
      document.body.append(area);
      area.select();
      const ok = document.execCommand("copy");
      area.remove();
      return ok;
    }
  }

  function dismiss(entry) {
    dismissed.add(entry.suggestion.id);
    cards.delete(entry.suggestion.id);
    entry.el.dataset.state = "dismissed"; // fades out (CSS), then goes
    window.setTimeout(() => {
      entry.el.remove();
      emptyState.hidden = cards.size > 0;
    }, 300);
  }

  async function onCardClick(entry, event) {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const action = button.dataset.action;
    const s = entry.suggestion;
    if (action === "why") {
      const box = field(entry, "why");
      box.hidden = !box.hidden;
      button.setAttribute("aria-expanded", String(!box.hidden));
      button.textContent = box.hidden ? "Why?" : "Hide why";
      return;
    }
    showMessage(entry, "");
    button.disabled = true;
    if (action === "open") {
      entry.expanded = true;
      renderSnippet(entry);
      await sendFeedback(entry, "opened");
    } else if (action === "copy") {
      if (!(await copyText(s.title + "\n\n" + s.content))) {
        showMessage(entry, "The browser did not allow copying; select the text instead.");
      } else if (await sendFeedback(entry, "copied")) {
        showMessage(entry, "Copied to the clipboard.", "info");
      }
    } else if (action === "accept" && (await sendFeedback(entry, "accepted"))) {
      entry.el.dataset.state = "accepted";
      button.textContent = "Accepted";
      return; // stays disabled
    } else if (action === "dismiss" && (await sendFeedback(entry, "dismissed"))) {
      dismiss(entry);
      return;
    }
    button.disabled = false;
  }

  // --- the agent's own question -----------------------------------------------------------
  askForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const question = askInput.value.trim();
    if (!question) return;
    if (!config.knowledgeSourceIds.length) {
      askStatus.textContent = "No knowledge sources are configured for the desk.";
      return;
    }
    const body = {
      conversation_id: config.conversationId,
      transcript: question,
      agent_skills: config.agentSkills,
      knowledge_source_ids: config.knowledgeSourceIds,
    };
    if (config.agentId) body.agent_id = config.agentId;
    const submit = askForm.querySelector("button[type=submit]");
    submit.disabled = true;
    askStatus.textContent = "Asking…";
    try {
      const accepted = await api("POST", "/v1/suggestions", body);
      pendingAsks.add(accepted.request_id);
      askStatus.textContent = "Asked; suggestions appear here as soon as they are ranked.";
      askInput.value = "";
    } catch (err) {
      askStatus.textContent = "Could not ask: " + err.message;
    } finally {
      submit.disabled = false;
    }
  });

  connect();
})();
