/*
 * The chat page: a JSON-mode line client over a WebSocket (/ws).
 *
 * Every line the user types is sent as one WebSocket message, exactly as
 * the line protocol takes it; every message from the server is one JSON
 * object.  The page keeps what the line protocol has: one current room,
 * plus private conversations, each shown in its own view.
 *
 * Text from the network (names, messages, topics) only ever reaches the
 * page through textContent / createTextNode, never as markup, so a name
 * like <script>alert(1)</script> is shown as written.
 */
(function () {
  "use strict";

  /* Reconnect delays: doubled from the first, never above the cap. */
  var RETRY_FIRST_MS = 250;
  var RETRY_MAX_MS = 4000;
  /* A name still held by our own dead session (a connection the server
   * has not seen go: it pings a quiet browser and gives up within a
   * minute): the same name again this often, for this long. */
  var REUSE_RETRY_MS = 1000;
  var REUSE_RETRIES = 90;
  var HISTORY_ON_ENTER = 50;
  var HISTORY_ON_RECONNECT = 200;

  var $ = function (id) { return document.getElementById(id); };

  var ui = {
    status: $("status"),
    whoami: $("whoami"),
    peopleToggle: $("people-toggle"),
    leave: $("leave"),
    loginScreen: $("login-screen"),
    loginForm: $("login-form"),
    loginName: $("login-name"),
    loginRoom: $("login-room"),
    loginError: $("login-error"),
    loginButton: $("login-button"),
    chatScreen: $("chat-screen"),
    viewTabs: $("view-tabs"),
    viewTitle: $("view-title"),
    topic: $("topic"),
    logs: $("logs"),
    sendForm: $("send-form"),
    input: $("input"),
    sidebar: $("sidebar"),
    membersTitle: $("members-title"),
    members: $("members"),
    rooms: $("rooms"),
    roomsRefresh: $("rooms-refresh"),
    joinForm: $("join-form"),
    joinRoom: $("join-room")
  };

  /*
   * phase: "login" (the form is shown), "chat" (logged in),
   * "reconnecting" (logged in before, the socket is down or logging in
   * again).
   */
  var state = {
    socket: null,
    phase: "login",
    me: null,
    room: null,
    wantedRoom: null,
    members: [],
    joining: null,        /* names of a room we are entering (/join) */
    retryDelay: RETRY_FIRST_MS,
    retryTimer: null,
    reuseTries: 0,
    attempts: 0,          /* connections tried since the last login */
    quitting: false,
    quietHistoryEnds: 0,  /* "end of history" replies to our own requests */
    quietRooms: 0,        /* "rooms" replies to our own requests */
    seen: Object.create(null),  /* "room\nid" of messages shown */
    logs: Object.create(null),  /* room -> log element */
    topics: Object.create(null),
    privates: Object.create(null),  /* lowercased name -> view */
    roomList: [],         /* the rooms, as the last /rooms said */
    roomUnread: 0,
    shown: "room"         /* "room" or a key of privates */
  };

  /* ---- small helpers ---------------------------------------------------- */

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function clear(node) {
    while (node.firstChild) { node.removeChild(node.firstChild); }
  }

  function key(name) { return String(name).toLowerCase(); }

  function parseTime(ts) {
    /* Microseconds are more than Date needs; keep milliseconds. */
    var date = new Date(String(ts || "").replace(/(\.\d{3})\d+/, "$1"));
    return isNaN(date.getTime()) ? new Date() : date;
  }

  function timeNode(ts) {
    var date = parseTime(ts);
    var node = el("time", "ts", date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
    node.dateTime = date.toISOString();
    node.title = date.toLocaleString();
    return node;
  }

  function setStatus(kind, text) {
    ui.status.dataset.state = kind;
    ui.status.textContent = text;
  }

  /* ---- the socket ------------------------------------------------------- */

  function socketURL() {
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + "/ws";
  }

  function isOpen() {
    return state.socket !== null && state.socket.readyState === WebSocket.OPEN;
  }

  function send(line) {
    if (!isOpen()) { return false; }
    state.socket.send(line);
    return true;
  }

  function loginLine() {
    return state.wantedRoom ? state.me + " " + state.wantedRoom : state.me;
  }

  /* The socket's life, on the status element: for whoever debugs a
   * connection (and for the page's tests). */
  function socketState(what) {
    ui.status.dataset.socket = what;
  }

  function connect() {
    var socket;
    state.attempts += 1;
    ui.status.dataset.attempts = String(state.attempts);
    socketState("connecting");
    try {
      socket = new WebSocket(socketURL());
    } catch (e) {
      socketState("closed");
      connectionLost(null);
      return;
    }
    state.socket = socket;
    state.quietHistoryEnds = 0;
    state.quietRooms = 0;
    state.joining = null;
    socket.onopen = function () {
      if (state.socket !== socket) { return; }
      socket.opened = true;
      socketState("open");
      send(loginLine());
    };
    socket.onmessage = function (event) {
      if (state.socket !== socket) { return; }
      receive(event.data);
    };
    socket.onclose = function () {
      if (state.socket !== socket) { return; }
      state.socket = null;
      socketState("closed");
      connectionLost(socket);
    };
  }

  function connectionLost(socket) {
    if (state.quitting) {
      state.quitting = false;
      showLogin("You left the chat.");
      return;
    }
    if (state.phase === "login") {
      setStatus("offline", "not connected");
      if (!socket || !socket.opened) {
        loginFailed("Cannot reach the chat server; try again.");
      } else if (!ui.loginError.textContent) {
        loginFailed("The server closed the connection; try again.");
      } else {
        ui.loginButton.disabled = false;
      }
      return;
    }
    if (state.phase === "chat") {
      state.phase = "reconnecting";
      systemLine("disconnected; reconnecting…");
    }
    setStatus("reconnecting", "reconnecting…");
    scheduleReconnect();
  }

  function scheduleReconnect() {
    window.clearTimeout(state.retryTimer);
    var delay = state.retryDelay;
    state.retryDelay = Math.min(state.retryDelay * 2, RETRY_MAX_MS);
    state.retryTimer = window.setTimeout(connect, delay);
  }

  /* ---- logging in ------------------------------------------------------- */

  function loginSubmitted(event) {
    event.preventDefault();
    var name = ui.loginName.value.trim();
    var room = ui.loginRoom.value.trim().replace(/^#/, "");
    if (!name) {
      loginFailed("Type a name first.");
      return;
    }
    state.me = name;
    state.wantedRoom = room || null;
    ui.loginError.textContent = "";
    ui.loginButton.disabled = true;
    if (isOpen()) {
      send(loginLine());
    } else {
      setStatus("connecting", "connecting…");
      connect();
    }
  }

  function loginFailed(text) {
    ui.loginError.textContent = text;
    ui.loginButton.disabled = false;
    ui.loginName.setAttribute("aria-invalid", "true");
    ui.loginName.focus();
    ui.loginName.select();
  }

  function showLogin(text) {
    window.clearTimeout(state.retryTimer);
    state.phase = "login";
    state.retryDelay = RETRY_FIRST_MS;
    ui.chatScreen.hidden = true;
    ui.loginScreen.hidden = false;
    ui.leave.hidden = true;
    ui.peopleToggle.hidden = true;
    ui.whoami.textContent = "";
    if (state.me) { ui.loginName.value = state.me; }
    if (state.room) { ui.loginRoom.value = state.room; }
    setStatus("offline", "not connected");
    loginFailed(text);
  }

  /* A new login (not a reconnection) starts with nothing shown. */
  function forget() {
    clear(ui.logs);
    state.seen = Object.create(null);
    state.logs = Object.create(null);
    state.topics = Object.create(null);
    state.privates = Object.create(null);
    state.room = null;
    state.roomUnread = 0;
    state.shown = "room";
  }

  function loggedIn(msg) {
    var again = state.phase === "reconnecting";
    if (!again) { forget(); }
    state.phase = "chat";
    state.me = msg.name;
    state.retryDelay = RETRY_FIRST_MS;
    state.reuseTries = 0;
    state.attempts = 0;
    ui.loginName.removeAttribute("aria-invalid");
    ui.loginButton.disabled = false;
    ui.loginScreen.hidden = true;
    ui.chatScreen.hidden = false;
    ui.leave.hidden = false;
    ui.peopleToggle.hidden = false;
    enterRoom(msg.room, msg.names || []);
    setStatus("connected", "connected");
    requestHistory(again ? HISTORY_ON_RECONNECT : HISTORY_ON_ENTER);
    requestRooms();
    if (again) {
      systemLine("reconnected");
    } else {
      ui.input.focus();
    }
  }

  function loginRefused(msg) {
    if (state.phase === "reconnecting") {
      if (msg.type === "reuse" && state.reuseTries < REUSE_RETRIES) {
        /* Our old session has not gone yet: the same name, shortly. */
        state.reuseTries += 1;
        if (state.reuseTries === 1) {
          systemLine("waiting for the old session of " + state.me + " to end…");
        }
        window.clearTimeout(state.retryTimer);
        state.retryTimer = window.setTimeout(function () { send(loginLine()); }, REUSE_RETRY_MS);
        return;
      }
      var socket = state.socket;
      state.socket = null;
      if (socket) { socket.close(); }
      showLogin(msg.text);
      return;
    }
    loginFailed(msg.text);
  }

  /* ---- rooms and members ------------------------------------------------ */

  function sameRoom(a, b) {
    return a !== null && a !== undefined && b !== null && b !== undefined && key(a) === key(b);
  }

  function roomLog(room) {
    var log = state.logs[key(room)];
    if (!log) {
      log = el("ol", "log");
      log.dataset.room = room;
      log.setAttribute("aria-label", "Messages in #" + room);
      log.hidden = true;
      ui.logs.appendChild(log);
      state.logs[key(room)] = log;
    }
    return log;
  }

  function enterRoom(room, names) {
    var changed = !sameRoom(state.room, room);
    state.room = room;
    state.wantedRoom = room;
    state.members = [];
    addMembers(names);
    addMembers([state.me]);
    roomLog(room);
    if (changed) {
      state.roomUnread = 0;
      if (state.shown === "room") { show("room"); }
    }
    ui.whoami.textContent = state.me + " in #" + room;
    renderTabs();
    renderTitle();
    renderRoomsCurrent();
  }

  function addMembers(names) {
    for (var i = 0; i < names.length; i++) {
      if (state.members.indexOf(names[i]) < 0) { state.members.push(names[i]); }
    }
    renderMembers();
  }

  function removeMember(name) {
    var at = state.members.indexOf(name);
    if (at >= 0) { state.members.splice(at, 1); }
    renderMembers();
  }

  function renderMembers() {
    var sorted = state.members.slice().sort(function (a, b) {
      return a.toLowerCase() < b.toLowerCase() ? -1 : a.toLowerCase() > b.toLowerCase() ? 1 : 0;
    });
    clear(ui.members);
    ui.membersTitle.textContent = state.room ? "In #" + state.room + " (" + sorted.length + ")" : "In the room";
    sorted.forEach(function (name) {
      var item = el("li");
      if (name === state.me) {
        item.appendChild(el("span", "member me", name + " (you)"));
      } else {
        var button = el("button", "member", name);
        button.type = "button";
        button.dataset.name = name;
        button.setAttribute("aria-label", "Talk privately with " + name);
        button.addEventListener("click", function () { openPrivate(name, true); });
        item.appendChild(button);
      }
      ui.members.appendChild(item);
    });
    countInRoomList(sorted.length);
  }

  /* The rooms list is as old as its last refresh, except for the count
   * of the room we are in, which we see change. */
  function countInRoomList(count) {
    var buttons = ui.rooms.querySelectorAll("button.room");
    for (var i = 0; i < buttons.length; i++) {
      if (state.room && key(buttons[i].dataset.room) === key(state.room)) {
        buttons[i].querySelector(".count").textContent = String(count);
        buttons[i].setAttribute("aria-label", "#" + state.room + ", " + count + " in it");
      }
    }
  }

  function renderRooms(rooms) {
    clear(ui.rooms);
    rooms.forEach(function (room) {
      var item = el("li");
      var button = el("button", "room", "#" + room.name);
      button.type = "button";
      button.dataset.room = room.name;
      button.appendChild(el("span", "count", String(room.members)));
      button.setAttribute("aria-label", "#" + room.name + ", " + room.members + " in it");
      button.addEventListener("click", function () { joinRoom(room.name); });
      item.appendChild(button);
      ui.rooms.appendChild(item);
    });
    renderRoomsCurrent();
  }

  function renderRoomsCurrent() {
    var buttons = ui.rooms.querySelectorAll("button.room");
    for (var i = 0; i < buttons.length; i++) {
      if (state.room && key(buttons[i].dataset.room) === key(state.room)) {
        buttons[i].setAttribute("aria-current", "true");
      } else {
        buttons[i].removeAttribute("aria-current");
      }
    }
  }

  function joinRoom(room) {
    room = room.trim().replace(/^#/, "");
    if (!room) { return; }
    if (sendOrSay("/join " + room)) { show("room"); }
  }

  function requestHistory(count) {
    if (send("/history " + count)) { state.quietHistoryEnds += 1; }
  }

  function requestRooms() {
    if (send("/rooms")) { state.quietRooms += 1; }
  }

  /* ---- views (the room, private conversations) ------------------------- */

  function openPrivate(name, focus) {
    var view = privateView(name);
    show(view.key);
    if (focus) { ui.input.focus(); }
    return view;
  }

  function privateView(name) {
    var k = key(name);
    var view = state.privates[k];
    if (!view) {
      var log = el("ol", "log");
      log.hidden = true;
      ui.logs.appendChild(log);
      view = { key: k, name: name, log: log, unread: 0 };
      state.privates[k] = view;
      renderTabs();
    }
    view.log.setAttribute("aria-label", "Private conversation with " + view.name);
    return view;
  }

  function currentLog() {
    if (state.shown !== "room" && state.privates[state.shown]) {
      return state.privates[state.shown].log;
    }
    return roomLog(state.room || "lobby");
  }

  function show(which) {
    state.shown = which;
    var shownLog = currentLog();
    var logs = ui.logs.children;
    for (var i = 0; i < logs.length; i++) {
      var visible = logs[i] === shownLog;
      logs[i].hidden = !visible;
      if (visible) {
        logs[i].setAttribute("aria-live", "polite");
      } else {
        logs[i].removeAttribute("aria-live");
      }
    }
    if (which === "room") {
      state.roomUnread = 0;
    } else {
      state.privates[which].unread = 0;
    }
    renderTabs();
    renderTitle();
    scrollDown(shownLog);
    if (window.matchMedia("(max-width: 600px)").matches) { togglePeople(false); }
  }

  function renderTitle() {
    if (state.shown === "room") {
      ui.viewTitle.textContent = state.room ? "#" + state.room : "";
      var topic = state.room ? state.topics[key(state.room)] : "";
      ui.topic.textContent = topic || "";
      ui.topic.hidden = !topic;
    } else {
      ui.viewTitle.textContent = "Private: " + state.privates[state.shown].name;
      ui.topic.textContent = "";
      ui.topic.hidden = true;
    }
    document.title = (totalUnread() ? "(" + totalUnread() + ") " : "") + ui.viewTitle.textContent + " · chatsvc";
  }

  function totalUnread() {
    var total = state.roomUnread;
    Object.keys(state.privates).forEach(function (k) { total += state.privates[k].unread; });
    return total;
  }

  function tab(label, which, unread) {
    var item = el("li");
    var button = el("button", "tab", label);
    button.type = "button";
    button.dataset.view = which;
    if (state.shown === which) { button.setAttribute("aria-current", "page"); }
    if (unread > 0) {
      button.classList.add("unread");
      var badge = el("span", "badge", String(unread));
      badge.setAttribute("aria-hidden", "true");
      button.appendChild(badge);
      button.setAttribute("aria-label", label + ", " + unread + " unread");
    }
    button.addEventListener("click", function () {
      show(which);
      ui.input.focus();
    });
    item.appendChild(button);
    ui.viewTabs.appendChild(item);
  }

  function renderTabs() {
    clear(ui.viewTabs);
    tab(state.room ? "#" + state.room : "room", "room", state.roomUnread);
    Object.keys(state.privates).forEach(function (k) {
      var view = state.privates[k];
      tab("@" + view.name, k, view.unread);
    });
    renderTitle();
  }

  /* ---- lines in a log --------------------------------------------------- */

  function nearBottom(log) {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  }

  function scrollDown(log) {
    log.scrollTop = log.scrollHeight;
  }

  /* Messages with an id go in id order (history arrives after newer
   * lines, and fills gaps after a reconnect); everything else at the end. */
  function place(log, item, id) {
    var stick = nearBottom(log);
    var before = null;
    if (typeof id === "number") {
      item.dataset.id = String(id);
      if (id < Number(log.dataset.maxId || 0)) {
        var items = log.querySelectorAll("li[data-id]");
        for (var i = items.length - 1; i >= 0 && Number(items[i].dataset.id) > id; i--) {
          before = items[i];
        }
      } else {
        log.dataset.maxId = String(id);
      }
    }
    log.insertBefore(item, before);
    if (stick) { log.scrollTop = log.scrollHeight; }
  }

  function line(log, msg, className) {
    var item = el("li", "line " + (className || ""));
    item.appendChild(timeNode(msg.ts));
    item.appendChild(document.createTextNode(" "));
    return item;
  }

  function chatLine(log, msg, kind) {
    var item = line(log, msg, kind + (msg.history ? " history" : ""));
    var from = msg.from;
    if (kind === "action") {
      item.appendChild(el("span", "text", "* "));
      item.appendChild(el("span", "from" + (from === state.me ? " own" : ""), from));
      item.appendChild(el("span", "text", " " + msg.text));
    } else {
      item.appendChild(el("span", "from" + (from === state.me ? " own" : ""), from));
      item.appendChild(el("span", "sep", ": "));
      item.appendChild(el("span", "text", msg.text));
    }
    place(log, item, msg.id);
  }

  function eventLine(log, msg, text) {
    var item = line(log, msg, "event");
    item.appendChild(el("span", "text", text));
    place(log, item);
  }

  function systemLine(text, className) {
    var log = currentLog();
    var item = el("li", "line system " + (className || ""));
    item.appendChild(timeNode(new Date().toISOString()));
    item.appendChild(document.createTextNode(" "));
    item.appendChild(el("span", "text", text));
    place(log, item);
  }

  /* ---- what the server says --------------------------------------------- */

  function receive(data) {
    var msg;
    try {
      msg = JSON.parse(data);
    } catch (e) {
      systemLine(String(data));
      return;
    }
    if (!msg || typeof msg !== "object") { return; }
    /* The JSON rendering sends a taken name and a full server as errors
     * with that code (the text rendering as "reuse:" and "full:"). */
    if (msg.type === "error" && (msg.code === "reuse" || msg.code === "full")) {
      msg.type = msg.code;
    }
    var handler = handlers[msg.type];
    if (handler) {
      handler(msg);
    } else if (msg.text) {
      systemLine(msg.text);
    }
  }

  function roomMessage(msg) {
    var room = msg.room;
    var seenKey = key(room) + "\n" + msg.id;
    if (typeof msg.id === "number") {
      if (state.seen[seenKey]) { return; }
      state.seen[seenKey] = true;
    }
    chatLine(roomLog(room), msg, msg.type);
    if (sameRoom(room, state.room) && !msg.history && msg.from !== state.me && state.shown !== "room") {
      state.roomUnread += 1;
      renderTabs();
    }
  }

  var handlers = {
    success: function (msg) {
      loggedIn(msg);
    },
    reuse: loginRefused,
    full: function (msg) {
      if (state.phase === "login") { loginFailed(msg.text); } else { systemLine(msg.text, "error"); }
    },
    error: function (msg) {
      if (state.phase === "chat") {
        systemLine(msg.text, "error");
      } else {
        loginRefused(msg);
      }
    },
    info: function (msg) {
      if (Array.isArray(msg.names) && (msg.part === undefined || msg.part === 1)) {
        /* "you are now in #ROOM with: ..." after /join: our join follows. */
        state.joining = msg.names.slice();
      } else if (Array.isArray(msg.names) && state.joining) {
        state.joining = state.joining.concat(msg.names);
      }
      if (/^end of history/.test(msg.text || "") && state.quietHistoryEnds > 0) {
        state.quietHistoryEnds -= 1;
        return;
      }
      /* The names go to the member list; our join says where we are. */
      if (!Array.isArray(msg.names)) { systemLine(msg.text); }
    },
    who: function (msg) {
      var names = Array.isArray(msg.names) ? msg.names : [];
      var here = sameRoom(msg.room, state.room);
      if (state.joining && msg.part > 1 && !here) {
        state.joining = state.joining.concat(names);
        return;
      }
      if (here) {
        if (!(msg.part > 1)) {
          state.members = [];
          addMembers([state.me]);
        }
        addMembers(names);
      }
      if (!(msg.part > 1) || !here) { systemLine(msg.text); }
    },
    rooms: function (msg) {
      if (!(msg.part > 1)) { state.roomList = []; }
      state.roomList = (state.roomList || []).concat(Array.isArray(msg.rooms) ? msg.rooms : []);
      renderRooms(state.roomList);
      if (!msg.part || msg.part === msg.parts) {
        if (state.quietRooms > 0) { state.quietRooms -= 1; } else { systemLine(msg.text); }
      }
    },
    join: function (msg) {
      if (msg.name === state.me) {
        if (!sameRoom(msg.room, state.room)) {
          var names = state.joining || [];
          state.joining = null;
          enterRoom(msg.room, names);
          eventLine(roomLog(msg.room), msg, "you joined #" + msg.room);
          requestHistory(HISTORY_ON_ENTER);
          requestRooms();
        }
        return;
      }
      if (sameRoom(msg.room, state.room)) { addMembers([msg.name]); }
      eventLine(roomLog(msg.room), msg, msg.name + " joined");
    },
    leave: function (msg) {
      if (sameRoom(msg.room, state.room) && msg.name !== state.me) { removeMember(msg.name); }
      if (msg.name !== state.me) {
        eventLine(roomLog(msg.room), msg, msg.name + " left (" + msg.reason + ")");
      }
    },
    rename: function (msg) {
      if (msg.from === state.me) {
        state.me = msg.to;
        ui.whoami.textContent = state.me + " in #" + state.room;
      }
      if (sameRoom(msg.room, state.room)) {
        removeMember(msg.from);
        addMembers([msg.to]);
      }
      var view = state.privates[key(msg.from)];
      if (view && key(msg.from) !== key(msg.to)) {
        delete state.privates[view.key];
        view.key = key(msg.to);
        state.privates[view.key] = view;
        if (state.shown === key(msg.from)) { state.shown = view.key; }
      }
      if (view) { view.name = msg.to; renderTabs(); }
      eventLine(roomLog(msg.room), msg, msg.from + " is now " + msg.to);
    },
    topic: function (msg) {
      state.topics[key(msg.room)] = msg.text;
      renderTitle();
      eventLine(roomLog(msg.room), msg, msg.text
        ? msg.from + " set the topic: " + msg.text
        : msg.from + " cleared the topic");
    },
    message: roomMessage,
    action: roomMessage,
    "private": function (msg) {
      var mine = key(msg.from) === key(state.me);
      var view = privateView(mine ? msg.to : msg.from);
      chatLine(view.log, msg, "private");
      if (state.shown !== view.key && !mine) {
        view.unread += 1;
        renderTabs();
      }
    }
  };

  /* ---- what the user types ---------------------------------------------- */

  /* Send a line, or say in the view why it could not go. */
  function sendOrSay(line) {
    if (send(line)) { return true; }
    systemLine("not sent: not connected (reconnecting…)", "error");
    return false;
  }

  function inputSubmitted(event) {
    event.preventDefault();
    var text = ui.input.value;
    if (!text.trim()) { return; }
    var line = text;
    var privateTo = state.shown !== "room" ? state.privates[state.shown].name : null;
    var msgCommand = /^\/msg\s+(\S+)\s+\S/i.exec(text);
    if (text.charAt(0) === "/" && text.charAt(1) !== "/") {
      if (/^\/quit\b/i.test(text)) { state.quitting = true; }
    } else if (privateTo) {
      line = "/msg " + privateTo + " " + (text.slice(0, 2) === "//" ? text.slice(1) : text);
    }
    if (sendOrSay(line)) {
      ui.input.value = "";
      if (msgCommand) { openPrivate(msgCommand[1], true); }
    } else {
      state.quitting = false;
    }
  }

  function togglePeople(open) {
    if (typeof open !== "boolean") { open = !document.body.classList.contains("people-open"); }
    document.body.classList.toggle("people-open", open);
    ui.peopleToggle.setAttribute("aria-expanded", open ? "true" : "false");
  }

  function leave() {
    state.quitting = true;
    if (!sendOrSay("/quit")) {
      state.quitting = false;
      showLogin("You left the chat.");
    }
  }

  ui.loginForm.addEventListener("submit", loginSubmitted);
  ui.sendForm.addEventListener("submit", inputSubmitted);
  ui.joinForm.addEventListener("submit", function (event) {
    event.preventDefault();
    joinRoom(ui.joinRoom.value);
    ui.joinRoom.value = "";
  });
  ui.roomsRefresh.addEventListener("click", function () {
    if (send("/rooms")) { state.quietRooms += 1; }
  });
  ui.peopleToggle.addEventListener("click", function () { togglePeople(); });
  ui.leave.addEventListener("click", leave);
  ui.loginName.addEventListener("input", function () {
    ui.loginName.removeAttribute("aria-invalid");
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && document.body.classList.contains("people-open")) {
      togglePeople(false);
      ui.peopleToggle.focus();
    }
  });
  ui.loginName.focus();
}());
