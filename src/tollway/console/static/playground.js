/* Tollway console: the playground. Posts the conversation to /ui/playground/chat (same origin,
   the CSRF header) and draws the streamed chat-completions answer as it arrives, then its tokens
   and cost (the console's last event, "tollway.usage"). Without this file the form still posts
   and the page comes back with the whole answer. */
(function () {
  "use strict";
  if (window.tollwayPlayground) { window.tollwayPlayground.init(); return; }

  var state = { history: [], conversation: null, busy: false };

  function credits(value) {
    if (value === null || value === undefined) { return "—"; }
    var text = Number(value).toFixed(6).replace(/0+$/, "").replace(/\.$/, "");
    return text === "-0" || text === "" ? "0" : text;
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function turn(list, role, label) {
    var item = el("li", "turn turn-" + role);
    item.appendChild(el("span", "who-said", label));
    var said = el("div", "said");
    item.appendChild(said);
    list.appendChild(item);
    return { item: item, said: said };
  }

  function newId() {
    var bytes = new Uint8Array(8);
    window.crypto.getRandomValues(bytes);
    return "pg-" + Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function refuse(t, status, message) {
    t.item.className = "turn turn-error";
    t.item.setAttribute("role", "alert");
    t.item.firstChild.textContent = "refused" + (status ? " (" + status + ")" : "");
    t.said.textContent = message;
  }

  function meta(t) {
    var line = t.item.querySelector(".turn-meta");
    if (!line) { line = el("p", "turn-meta"); t.item.appendChild(line); }
    return line;
  }

  function showUsage(t, usage, cost) {
    var parts = [];
    if (usage) {
      parts.push(usage.prompt_tokens + " prompt + " + usage.completion_tokens + " completion tokens");
    }
    if (cost && !cost.pending) {
      parts.push(credits(cost.cost) + " credits");
      if (cost.estimated_cost) { parts.push("list price ≈ $" + credits(cost.estimated_cost) + " (not charged)"); }
    } else if (cost && cost.pending) {
      parts.push("cost not logged yet");
    } else {
      parts.push("cost …");
    }
    meta(t).textContent = parts.join(" · ");
    if (cost && cost.request_id) {
      var line = meta(t);
      line.appendChild(document.createTextNode(" · request "));
      line.appendChild(el("code", "", cost.request_id));
    }
  }

  function parseEvent(block) {
    var name = "message", data = [];
    block.split(/\r?\n/).forEach(function (line) {
      if (line.indexOf("event:") === 0) { name = line.slice(6).trim(); }
      else if (line.indexOf("data:") === 0) { data.push(line.slice(5).replace(/^ /, "")); }
    });
    return { name: name, data: data.join("\n") };
  }

  function readStream(response, t, done) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "", text = "", usage = null, failed = false;
    function handle(event) {
      if (!event.data) { return; }
      if (event.name === "tollway.usage") {
        var cost = null;
        try { cost = JSON.parse(event.data); } catch (e) { cost = { pending: true }; }
        if (!failed) { showUsage(t, usage || (cost && cost.prompt_tokens !== undefined ? cost : null), cost); }
        return;
      }
      if (event.data === "[DONE]") { return; }
      var chunk;
      try { chunk = JSON.parse(event.data); } catch (e) { return; }
      if (chunk.error) {
        failed = true;
        refuse(t, null, (chunk.error && chunk.error.message) || "The stream failed.");
        return;
      }
      (chunk.choices || []).forEach(function (choice) {
        var delta = choice.delta || {};
        if (typeof delta.content === "string" && delta.content) {
          text += delta.content;
          t.said.textContent = text;
        }
      });
      if (chunk.usage) { usage = chunk.usage; showUsage(t, usage, null); }
    }
    function pump() {
      return reader.read().then(function (step) {
        if (step.done) {
          if (buffer.trim()) { handle(parseEvent(buffer)); }
          done(failed ? null : text);
          return;
        }
        buffer += decoder.decode(step.value, { stream: true });
        var parts = buffer.split(/\r?\n\r?\n/);
        buffer = parts.pop();
        parts.forEach(function (part) { handle(parseEvent(part)); });
        return pump();
      });
    }
    return pump();
  }

  function send(form, event) {
    event.preventDefault();
    if (state.busy) { return; }
    var status = form.querySelector("#pg-status");
    var model = form.querySelector("#pg-model");
    var box = form.querySelector("#pg-message");
    var message = box.value;
    if (!model || !model.value) {
      status.textContent = form.querySelector("#pg-key") ? "Give a key and choose a model first." : "Choose a model first.";
      return;
    }
    if (!message.trim()) { status.textContent = "Write a message first."; box.focus(); return; }
    var list = form.querySelector("#pg-transcript");
    var messages = [];
    var system = form.querySelector("#pg-system");
    if (system && system.value.trim()) { messages.push({ role: "system", content: system.value }); }
    messages = messages.concat(state.history, [{ role: "user", content: message }]);
    state.conversation = state.conversation || newId();
    turn(list, "user", "you").said.textContent = message;
    var answer = turn(list, "assistant", model.value);
    answer.item.setAttribute("aria-busy", "true");
    var key = form.querySelector("#pg-key");
    var body = { model: model.value, messages: messages, conversation: state.conversation };
    if (key && key.value) { body.key = key.value; }
    var sendButton = form.querySelector("#pg-send");
    state.busy = true;
    sendButton.disabled = true;
    status.textContent = "Streaming…";
    box.value = "";
    var finish = function (text) {
      state.busy = false;
      sendButton.disabled = false;
      answer.item.removeAttribute("aria-busy");
      if (text !== null && text !== undefined) {
        state.history.push({ role: "user", content: message }, { role: "assistant", content: text });
        status.textContent = "Done.";
      } else {
        status.textContent = "";
        if (!box.value) { box.value = message; }
      }
      form.querySelector("#pg-new").hidden = state.history.length === 0;
      box.focus();
    };
    fetch(form.getAttribute("data-chat"), {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "text/event-stream",
                 "X-CSRF-Token": form.elements.csrf_token.value },
      body: JSON.stringify(body)
    }).then(function (response) {
      var type = response.headers.get("content-type") || "";
      if (response.ok && type.indexOf("text/event-stream") === 0) {
        return readStream(response, answer, finish);
      }
      if (response.status === 401 && response.headers.get("hx-redirect")) {
        refuse(answer, 401, "Your console session has ended: the key you signed in with is no longer accepted " +
               "(revoked or disabled), or the session expired. Sign in again.");
        var link = el("a", "", "Sign in");
        link.href = response.headers.get("hx-redirect");
        answer.said.appendChild(document.createTextNode(" "));
        answer.said.appendChild(link);
        finish(null);
        return;
      }
      if (type.indexOf("application/json") === 0) {
        return response.json().then(function (data) {
          refuse(answer, response.status, data.error || ("HTTP " + response.status));
          finish(null);
        });
      }
      refuse(answer, response.status, "The console answered HTTP " + response.status + ".");
      finish(null);
    }).catch(function () {
      refuse(answer, null, "The connection to the console failed.");
      finish(null);
    });
  }

  function reset(form) {
    state.history = [];
    state.conversation = null;
    var list = form.querySelector("#pg-transcript");
    while (list.firstChild) { list.removeChild(list.firstChild); }
    form.querySelector("#pg-new").hidden = true;
    form.querySelector("#pg-status").textContent = "New chat.";
    form.querySelector("#pg-message").focus();
  }

  function init() {
    var form = document.getElementById("playground");
    if (!form || form.getAttribute("data-ready")) { return; }
    form.setAttribute("data-ready", "1");
    state = { history: [], conversation: null, busy: false };
    form.addEventListener("submit", function (event) { send(form, event); });
    form.querySelector("#pg-new").addEventListener("click", function () { reset(form); });
    form.querySelector("#pg-message").addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { send(form, event); }
    });
  }

  window.tollwayPlayground = { init: init };
  document.addEventListener("DOMContentLoaded", init);
  document.addEventListener("htmx:load", init);
  // a key checked (the model picker swapped in): the "give a key first" hint is stale
  document.addEventListener("htmx:afterSwap", function (event) {
    var status = document.getElementById("pg-status");
    if (event.target && event.target.id === "pg-models" && status && !state.busy) { status.textContent = ""; }
  });
  init();
})();
