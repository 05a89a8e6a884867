/* civicgate console: live queue and transcript over Server-Sent Events. No build step.
   Forms post and reload; this script only keeps the page current between actions. */
(function () {
  "use strict";
  var queue = document.getElementById("queue");
  var transcript = document.getElementById("transcript");
  var liveState = document.getElementById("live-state");
  var handoff = transcript ? transcript.getAttribute("data-handoff") : null;

  function getJson(url, done) {
    var request = new XMLHttpRequest();
    request.open("GET", url, true);
    request.setRequestHeader("Accept", "application/json");
    request.onload = function () {
      if (request.status === 200) { done(JSON.parse(request.responseText)); }
      else if (request.status === 401) { window.location = "/console/login"; }
    };
    request.send();
  }

  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    row.appendChild(td);
    return td;
  }

  function renderQueue(rows) {
    var body = queue.getElementsByTagName("tbody")[0];
    while (body.firstChild) { body.removeChild(body.firstChild); }
    if (!rows.length) {
      var empty = document.createElement("tr");
      empty.className = "empty";
      var td = cell(empty, queue.getAttribute("data-empty") || "Nobody is waiting.");
      td.colSpan = 7;
      body.appendChild(empty);
      return;
    }
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      var tr = document.createElement("tr");
      tr.setAttribute("data-handoff", r.id);
      cell(tr, r.waiting_minutes + " min");
      cell(tr, r.channel);
      cell(tr, r.kind + (r.callback_at ? " · " + r.callback_at : ""));
      cell(tr, r.team);
      cell(tr, r.status);
      cell(tr, r.agent);
      var link = document.createElement("a");
      link.href = "/console/handoffs/" + r.id;
      link.textContent = queue.getAttribute("data-open") || "Open";
      cell(tr, "").appendChild(link);
      body.appendChild(tr);
    }
  }

  function appendMessages(data) {
    var messages = data.messages;
    for (var i = 0; i < messages.length; i++) {
      var m = messages[i];
      var li = document.createElement("li");
      li.className = "msg " + m.direction;
      li.setAttribute("data-id", m.id);
      var meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = m.author + " · " + m.channel + (m.intent ? " · " + m.intent : "");
      var text = document.createElement("span");
      text.className = "text";
      text.textContent = m.text;
      li.appendChild(meta);
      li.appendChild(text);
      transcript.appendChild(li);
      transcript.setAttribute("data-latest", m.id);
    }
    if (messages.length) { transcript.scrollTop = transcript.scrollHeight; }
    var status = document.getElementById("handoff-status");
    if (status && data.handoff && status.getAttribute("data-status") !== data.handoff.status) {
      window.location.reload();  // claimed, transferred or closed elsewhere
    }
  }

  function refreshTranscript() {
    var after = transcript.getAttribute("data-latest") || "0";
    getJson("/console/api/handoffs/" + handoff + "/messages?after=" + after, appendMessages);
  }

  if (!window.EventSource || (!queue && !transcript)) { return; }
  var source = new EventSource("/console/events" + (handoff ? "?handoff=" + handoff : ""));
  source.onopen = function () { if (liveState) { liveState.textContent = "●"; } };
  source.onerror = function () { if (liveState) { liveState.textContent = "…"; } };
  source.addEventListener("queue", function () {
    if (queue) { getJson("/console/api/queue", renderQueue); }
    if (transcript) { refreshTranscript(); }
  });
  source.addEventListener("messages", function () { if (transcript) { refreshTranscript(); } });
  if (transcript) { transcript.scrollTop = transcript.scrollHeight; }
})();
