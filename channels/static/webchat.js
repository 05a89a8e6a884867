/* civicgate web chat. ES5 on purpose: it must work on small, old phone browsers.
   Uses a WebSocket when there is one, and a plain POST otherwise. */
(function () {
  "use strict";
  var log = document.getElementById("log");
  var form = document.getElementById("form");
  var input = document.getElementById("text");
  var statusLine = document.getElementById("status");
  var texts = window.CIVICGATE || {};
  var socket = null;
  var queue = [];

  function add(kind, text) {
    var row = document.createElement("div");
    row.className = "row " + kind + "-row";
    var bubble = document.createElement("div");
    bubble.className = "msg " + kind;
    bubble.textContent = text;
    row.appendChild(bubble);
    log.appendChild(row);
    log.scrollTop = log.scrollHeight;
  }

  /* Answered options are greyed out and can no longer be pressed: once the citizen has
     sent anything (a press or typed text), every option shown before it is past. */
  function disableAll(box) {
    var buttons = box.getElementsByTagName("button");
    for (var i = 0; i < buttons.length; i++) { buttons[i].disabled = true; }
  }

  function showReply(reply) {
    add("bot", reply.text || "");
    if (!reply.buttons || !reply.buttons.length) { return; }
    var box = document.createElement("div");
    box.className = "buttons";
    for (var i = 0; i < reply.buttons.length; i++) {
      (function (button) {
        var element = document.createElement("button");
        element.type = "button";
        element.textContent = button.title;
        element.onclick = function () {
          if (element.disabled) { return; }
          send(button.payload, button.title);
        };
        box.appendChild(element);
      })(reply.buttons[i]);
    }
    log.appendChild(box);
    log.scrollTop = log.scrollHeight;
  }

  function postMessage(text) {
    var request = new XMLHttpRequest();
    request.open("POST", "/channels/webchat/messages", true);
    request.setRequestHeader("Content-Type", "application/json");
    request.onload = function () {
      if (request.status !== 200) { statusLine.textContent = texts.failed; return; }
      var replies = JSON.parse(request.responseText);
      for (var i = 0; i < replies.length; i++) { showReply(replies[i]); }
    };
    request.onerror = function () { statusLine.textContent = texts.failed; };
    request.send(JSON.stringify({ message: text }));
  }

  function poll() {  /* no WebSocket: collect what was said outside our turns */
    var request = new XMLHttpRequest();
    request.open("GET", "/channels/webchat/messages", true);
    request.onload = function () {
      if (request.status === 200) {
        var messages = JSON.parse(request.responseText);
        for (var i = 0; i < messages.length; i++) { showReply(messages[i]); }
      }
      setTimeout(poll, 5000);
    };
    request.onerror = function () { setTimeout(poll, 5000); };
    request.send();
  }

  function connect() {
    if (!window.WebSocket) { setTimeout(poll, 5000); return; }
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + "/channels/webchat/ws");
    socket.onopen = function () {
      statusLine.textContent = "";
      while (queue.length) { socket.send(JSON.stringify({ message: queue.shift() })); }
    };
    socket.onmessage = function (event) { showReply(JSON.parse(event.data)); };
    socket.onclose = function () {
      socket = null;
      statusLine.textContent = texts.reconnecting;
      setTimeout(connect, 2000);
    };
  }

  function send(payload, shown) {
    disableAll(log);
    add("user", shown);
    statusLine.textContent = "";
    if (!window.WebSocket) { postMessage(payload); return; }
    if (socket && socket.readyState === 1) {
      socket.send(JSON.stringify({ message: payload }));
    } else {
      queue.push(payload);
    }
  }

  form.onsubmit = function (event) {
    if (event && event.preventDefault) { event.preventDefault(); }
    var text = input.value;
    if (!text.replace(/\s/g, "")) { return false; }
    input.value = "";
    send(text, text);
    return false;
  };

  connect();
})();
