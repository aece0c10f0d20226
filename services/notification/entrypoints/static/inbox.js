/* Punte — the case managers' web inbox: the institution's notices with live updates, mark
 * read, acknowledge an alert, and the team's referrals to act on. Plain JavaScript, no
 * dependencies, no build step; the sign-in, token, language, messages and API calls are the
 * shared punte.js (loaded first). The referral calls go through this service's /ui/api/
 * forwarding. Live updates come from GET /inbox/stream, read with fetch() (EventSource
 * cannot send the Authorization header) and parsed here as server-sent events. Opening a
 * referral from the inbox is case work: every call says so with the purpose code
 * "case-work" (X-Punte-Purpose, contracts/reference/access-purposes.yaml), which the
 * referral service records with the read. Data from the APIs only ever goes into the page
 * with textContent, never as HTML. */
(function () {
  "use strict";

  var TEXT = {
    ro: {
      "title": "Inbox responsabil de caz",
      "subtitle": "Case manager's inbox",
      "login.title": "Autentificare responsabil de caz",
      "login.hint": "Pentru responsabilii de caz ai instituțiilor din rețea. Pagina arată doar referința cazului, categoriile și urgența: niciodată numele, CNP-ul sau adresa copilului.",
      "live.on": "În direct",
      "live.connecting": "Conectare…",
      "live.off": "Reconectare…",
      "live.on.title": "Notificările noi apar singure, fără reîncărcarea paginii.",
      "live.off.title": "Legătura în timp real s-a întrerupt; se reîncearcă.",
      "live.new": "Notificare nouă: {text}",
      "tab.inbox": "Notificări",
      "tab.referrals": "Trimiteri către noi",
      "f.urgency": "Urgență",
      "f.kind": "Tip",
      "f.all": "Toate",
      "f.unread": "Doar necitite",
      "inbox.summary": "Afișate: {count} · necitite în total: {unread}",
      "inbox.empty": "Nicio notificare.",
      "inbox.unread": "Necitit",
      "entry.case": "Caz {id}",
      "entry.open": "Deschide trimiterea",
      "entry.read": "Marchează citit",
      "entry.ack": "Confirm preluarea",
      "entry.acked": "Preluat de {who}, {at}",
      "entry.ack.done": "Alerta a fost confirmată.",
      "kind.referral-requested": "Trimitere nouă",
      "kind.referral-updated": "Trimitere actualizată",
      "kind.referral-accepted": "Trimitere acceptată",
      "kind.referral-overdue": "Termen depășit",
      "kind.referral-returned": "Trimitere returnată",
      "kind.case-informed": "Caz nou, spre informare",
      "kind.report-added": "Raport nou la un caz",
      "kind.case-accessed": "Caz consultat",
      "dnc": "NU contactați familia",
      "dnc.long": "NU contactați familia: nicio scrisoare, SMS sau apel care ar putea avertiza agresorul.",
      "r.owner": "Responsabil",
      "r.owner.all": "Toate",
      "r.owner.mine": "Preluate de mine",
      "r.owner.unassigned": "Nepreluate",
      "r.closed": "Și cele închise",
      "referrals.summary": "Trimiteri: {count}",
      "referrals.empty": "Nicio trimitere.",
      "referrals.from": "De la {who}",
      "referrals.owner": "Responsabil: {who}",
      "referrals.unowned": "Nepreluată",
      "ref.back": "← Înapoi",
      "ref.title": "Trimiterea {id}",
      "ref.case": "Caz",
      "ref.categories": "Categorii",
      "ref.from": "De la",
      "ref.to": "Către",
      "ref.owner": "Responsabil",
      "ref.basis": "Temei",
      "ref.requested": "Trimisă la",
      "ref.deadlines": "Termene",
      "ref.history": "Istoric",
      "ref.nohistory": "Niciun pas încă.",
      "ref.loading": "Se încarcă trimiterea…",
      "basis.statutory-duty": "Obligație legală",
      "basis.consent": "Consimțământ",
      "basis.consent-pending": "Consimțământ în curs de obținere",
      "state.requested": "Trimisă",
      "state.received": "Primită",
      "state.accepted": "Acceptată",
      "state.rejected": "Refuzată",
      "state.in-progress": "În lucru",
      "state.on-hold": "Suspendată",
      "state.completed": "Finalizată",
      "state.failed": "Eșuată",
      "state.cancelled": "Anulată",
      "state.entered-in-error": "Introdusă din greșeală",
      "deadline.acknowledge": "confirmarea primirii",
      "deadline.decide": "decizia",
      "deadline.first_contact": "primul contact",
      "deadline.outcome": "rezultatul",
      "deadline.return_after": "returnare fără răspuns",
      "cmd.claim": "Preiau",
      "cmd.acknowledge": "Confirm primirea",
      "cmd.accept": "Accept",
      "cmd.reject": "Refuz…",
      "cmd.start": "Încep lucrul",
      "cmd.complete": "Finalizez…",
      "done.claim": "Ați preluat trimiterea.",
      "done.acknowledge": "Primirea a fost confirmată.",
      "done.accept": "Trimiterea a fost acceptată.",
      "done.reject": "Trimiterea a fost refuzată; instituția care a trimis-o este anunțată.",
      "done.start": "Lucrul a început.",
      "done.complete": "Trimiterea a fost finalizată.",
      "done.note": "Nota a fost adăugată la dosarul cazului.",
      "step.claim": "Preluată",
      "step.assign": "Alocată",
      "step.acknowledge": "Primire confirmată",
      "step.accept": "Acceptată",
      "step.reject": "Refuzată",
      "step.start": "Lucru început",
      "step.hold": "Suspendată",
      "step.resume": "Reluată",
      "step.complete": "Finalizată",
      "step.fail": "Eșuată",
      "step.forward": "Redirecționată",
      "step.cancel": "Anulată",
      "step.mark-error": "Marcată ca greșeală",
      "step.note": "Notă",
      "step.expire": "Expirată fără răspuns",
      "step.request": "Trimisă",
      "said.reason": "Motiv: {text}",
      "said.outcome": "Rezultat: {text}",
      "said.note": "Notă: {text}",
      "reject.code": "Motivul refuzului",
      "reject.choose": "— alegeți —",
      "reject.detail": "Precizări, ca notă în dosarul cazului (opțional; obligatoriu la „Alt motiv”)",
      "reject.submit": "Refuz trimiterea",
      "reject.detail.missing": "Precizați motivul.",
      "complete.outcome": "Rezultatul",
      "complete.choose": "— alegeți —",
      "complete.submit": "Finalizez trimiterea",
      "cancel": "Renunț",
      "note.label": "Notă / feedback în dosarul cazului",
      "note.placeholder": "ex. Evaluarea inițială este programată.",
      "note.hint": "Nota rămâne în dosarul cazului: o citesc doar cei care lucrează cazul; notificările spun doar că există.",
      "said.note.hidden": "Notă în dosar (o citesc cei care lucrează cazul)",
      "said.note.erased": "Notă ștearsă (termen de păstrare)",
      "note.submit": "Adaugă nota",
      "footer": "Fiecare consultare a unui caz este înregistrată în jurnalul de audit.",
      "err.409": "Operația nu este permisă acum.",
      "err.502": "Un serviciu a dat un răspuns neașteptat."
    },
    en: {
      "title": "Case manager's inbox",
      "subtitle": "Inbox responsabil de caz",
      "login.title": "Case manager sign-in",
      "login.hint": "For the case managers of the network's institutions. The page shows only the case reference, categories and urgency: never the child's name, CNP or address.",
      "live.on": "Live",
      "live.connecting": "Connecting…",
      "live.off": "Reconnecting…",
      "live.on.title": "New notifications appear by themselves, without reloading the page.",
      "live.off.title": "The live connection dropped; retrying.",
      "live.new": "New notification: {text}",
      "tab.inbox": "Notifications",
      "tab.referrals": "Referrals to us",
      "f.urgency": "Urgency",
      "f.kind": "Kind",
      "f.all": "All",
      "f.unread": "Unread only",
      "inbox.summary": "Shown: {count} · unread in all: {unread}",
      "inbox.empty": "No notifications.",
      "inbox.unread": "Unread",
      "entry.case": "Case {id}",
      "entry.open": "Open the referral",
      "entry.read": "Mark as read",
      "entry.ack": "Acknowledge",
      "entry.acked": "Acknowledged by {who}, {at}",
      "entry.ack.done": "The alert was acknowledged.",
      "kind.referral-requested": "New referral",
      "kind.referral-updated": "Referral updated",
      "kind.referral-accepted": "Referral accepted",
      "kind.referral-overdue": "Deadline missed",
      "kind.referral-returned": "Referral returned",
      "kind.case-informed": "New case, for information",
      "kind.report-added": "New report on a case",
      "kind.case-accessed": "Case viewed",
      "dnc": "Do NOT contact the household",
      "dnc.long": "Do NOT contact the household: no letter, SMS or call that could warn the abuser.",
      "r.owner": "Case manager",
      "r.owner.all": "All",
      "r.owner.mine": "Claimed by me",
      "r.owner.unassigned": "Unclaimed",
      "r.closed": "Include closed",
      "referrals.summary": "Referrals: {count}",
      "referrals.empty": "No referrals.",
      "referrals.from": "From {who}",
      "referrals.owner": "Case manager: {who}",
      "referrals.unowned": "Unclaimed",
      "ref.back": "← Back",
      "ref.title": "Referral {id}",
      "ref.case": "Case",
      "ref.categories": "Categories",
      "ref.from": "From",
      "ref.to": "To",
      "ref.owner": "Case manager",
      "ref.basis": "Legal basis",
      "ref.requested": "Requested at",
      "ref.deadlines": "Deadlines",
      "ref.history": "History",
      "ref.nohistory": "No steps yet.",
      "ref.loading": "Loading the referral…",
      "basis.statutory-duty": "Statutory duty",
      "basis.consent": "Consent",
      "basis.consent-pending": "Consent being obtained",
      "state.requested": "Requested",
      "state.received": "Received",
      "state.accepted": "Accepted",
      "state.rejected": "Rejected",
      "state.in-progress": "In progress",
      "state.on-hold": "On hold",
      "state.completed": "Completed",
      "state.failed": "Failed",
      "state.cancelled": "Cancelled",
      "state.entered-in-error": "Entered in error",
      "deadline.acknowledge": "acknowledgement",
      "deadline.decide": "decision",
      "deadline.first_contact": "first contact",
      "deadline.outcome": "outcome",
      "deadline.return_after": "returned unanswered",
      "cmd.claim": "Claim",
      "cmd.acknowledge": "Acknowledge receipt",
      "cmd.accept": "Accept",
      "cmd.reject": "Reject…",
      "cmd.start": "Start work",
      "cmd.complete": "Complete…",
      "done.claim": "You claimed the referral.",
      "done.acknowledge": "Receipt acknowledged.",
      "done.accept": "The referral was accepted.",
      "done.reject": "The referral was rejected; the referring institution is told.",
      "done.start": "Work started.",
      "done.complete": "The referral was completed.",
      "done.note": "The note was added to the case file.",
      "step.claim": "Claimed",
      "step.assign": "Assigned",
      "step.acknowledge": "Receipt acknowledged",
      "step.accept": "Accepted",
      "step.reject": "Rejected",
      "step.start": "Work started",
      "step.hold": "Put on hold",
      "step.resume": "Resumed",
      "step.complete": "Completed",
      "step.fail": "Failed",
      "step.forward": "Forwarded",
      "step.cancel": "Cancelled",
      "step.mark-error": "Marked as entered in error",
      "step.note": "Note",
      "step.expire": "Expired unanswered",
      "step.request": "Requested",
      "said.reason": "Reason: {text}",
      "said.outcome": "Outcome: {text}",
      "said.note": "Note: {text}",
      "reject.code": "Reason for rejecting",
      "reject.choose": "— choose —",
      "reject.detail": "Details, as a note in the case file (optional; required for “Other reason”)",
      "reject.submit": "Reject the referral",
      "reject.detail.missing": "Explain the reason.",
      "complete.outcome": "Outcome",
      "complete.choose": "— choose —",
      "complete.submit": "Complete the referral",
      "cancel": "Cancel",
      "note.label": "Note / feedback in the case file",
      "note.placeholder": "e.g. The initial assessment is scheduled.",
      "note.hint": "The note stays in the case file: only those working the case read it; notifications only say it exists.",
      "said.note.hidden": "A note in the case file (read by those working the case)",
      "said.note.erased": "Note erased (retention period)",
      "note.submit": "Add the note",
      "footer": "Every time a case is opened it is recorded in the audit trail.",
      "err.409": "That is not allowed now.",
      "err.502": "A service gave an unexpected answer."
    }
  };


  // Why a case manager rejects a referral: a code of the reasons catalogue
  // (contracts/reference/referral-reasons.yaml, served by ui/api/reference with its labels);
  // the details go as a note, which stays in the case file.
  var OPEN = ["requested", "received", "accepted", "in-progress", "on-hold"];
  var LIMIT = 100;
  // Why a case manager reads a referral from the inbox: a code of the purpose list.
  var PURPOSE = "case-work";
  var state = {
    entries: [], unread: 0, fresh: {}, referrals: null, referral: null, reference: null, tab: "inbox",
    stream: null, streamTimer: null, streamRetry: 0, live: null
  };
  var punte = Punte.page({
    name: "inbox", text: TEXT,
    headers: function () { return { "X-Punte-Purpose": PURPOSE }; },
    who: function (c) {
      var name = c.name || c.sub || "";
      if (!c.institution) { return name; }
      var where = label("institutions", c.institution);
      return name + (where && where !== c.institution && name.indexOf(where) < 0
        ? " — " + institutionName(c.institution) : " (" + c.institution + ")");
    },
    titlePrefix: function () { return state.unread > 0 && punte.token() ? "(" + state.unread + ") " : ""; },
    signedIn: function () {
      loadReference();
      selectTab("inbox");
      // The list first, then the live stream (which only brings what is new from now on).
      loadInbox().then(connectStream);
    },
    signedOut: function () {
      stopStream();
      state.entries = [];
      state.unread = 0;
      state.referrals = null;
      state.referral = null;
      $("entries").textContent = "";
      $("referrals").textContent = "";
      $("referral-view").hidden = true;
      $("live").hidden = true;
    },
    languageChanged: function () {
      fillChoices();
      if (state.live) { setLive(state.live); }
      if (!$("app-view").hidden || !$("referral-view").hidden) {
        renderInbox();
        renderReferrals();
      }
      if (state.referral) { renderReferral(state.referral); }
    }
  });
  var $ = punte.$, el = punte.el, t = punte.t, api = punte.api, busy = punte.busy, fmtTime = punte.fmtTime;
  var showMessage = punte.showMessage, clearMessage = punte.clearMessage;

  function button(text, className, onClick) {
    var b = el("button", className, text);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  function inLanguage(entry) { return punte.lang() === "ro" ? entry.summary_ro : entry.summary_en; }

  function label(group, id) {
    var known = state.reference && state.reference[group] && state.reference[group][id];
    if (!known) { return id; }
    return typeof known === "string" ? known : (known[punte.lang()] || known.ro || id);
  }

  function institutionName(id) {
    var name = label("institutions", id);
    return name && name !== id ? name + " (" + id + ")" : id;
  }

  // A text of this page for `prefix + id` if it has one, else the id as it came.
  function named(prefix, id) { return TEXT.ro[prefix + id] ? t(prefix + id) : id; }

  function announce(text) {
    var node = $("announce");
    node.textContent = "";
    setTimeout(function () { node.textContent = text; }, 50);
  }

  function loadReference() {
    if (state.reference) { return; }
    api("ui/api/reference", { keepMessage: true }).then(function (body) {
      state.reference = body;
      fillChoices();
      punte.refreshWhoami();
      renderInbox();
      renderReferrals();
      if (state.referral) { renderReferral(state.referral); }
    }).catch(function () { /* labels fall back to ids */ });
  }

  // ---- the inbox --------------------------------------------------------------------------

  function filters() {
    return { urgency: $("f-urgency").value, kind: $("f-kind").value, unread: $("f-unread").checked };
  }

  var inboxRequests = 0;
  function loadInbox(keepMessage) {
    var f = filters();
    // Two filter changes in a row send two requests whose answers may come back in either
    // order: only the last request's answer is shown, never an earlier filter's.
    var request = ++inboxRequests;
    return api("inbox", { params: { urgency: f.urgency, kind: f.kind, limit: LIMIT }, keepMessage: keepMessage })
      .then(function (body) {
        if (request !== inboxRequests) { return; }
        state.entries = body.entries;
        state.unread = body.unread;
        renderInbox();
      }).catch(function () { /* shown already */ });
  }

  function matches(entry) {
    var f = filters();
    return (!f.urgency || entry.urgency === f.urgency) && (!f.kind || entry.kind === f.kind);
  }

  function renderInbox() {
    var list = $("entries");
    list.textContent = "";
    var onlyUnread = $("f-unread").checked;
    var shown = state.entries.filter(function (e) { return !onlyUnread || !e.read_at; });
    shown.forEach(function (entry) { list.appendChild(entryCard(entry)); });
    if (!shown.length) { list.appendChild(el("li", "empty", t("inbox.empty"))); }
    $("inbox-summary").textContent = t("inbox.summary", { count: shown.length, unread: state.unread });
    var count = $("unread-count");
    count.textContent = String(state.unread);
    count.hidden = !state.unread;
    count.title = t("inbox.unread");
    punte.refreshTitle();
  }

  function entryCard(entry) {
    var unread = !entry.read_at;
    var item = el("li", "item " + entry.urgency + (unread ? " unread" : "") + (state.fresh[entry.notification_id] ? " fresh" : ""));
    item.setAttribute("data-id", entry.notification_id);
    item.setAttribute("data-case", entry.case_id);
    item.setAttribute("data-kind", entry.kind);
    if (entry.referral_id) { item.setAttribute("data-referral", entry.referral_id); }
    var head = el("div", "item-head");
    head.appendChild(el("span", "badge " + entry.urgency, entry.urgency));
    head.appendChild(el("span", "kind", t("kind." + entry.kind)));
    if (unread) { head.appendChild(el("span", "badge unread-mark", t("inbox.unread"))); }
    var time = el("time", null, fmtTime(entry.created_at));
    time.dateTime = entry.created_at;
    head.appendChild(time);
    item.appendChild(head);
    if (entry.do_not_contact) { item.appendChild(el("p", "dnc", t("dnc"))); }
    item.appendChild(el("p", "text", inLanguage(entry)));
    if (entry.acknowledged_at) {
      item.appendChild(el("p", "acked", t("entry.acked", { who: entry.acknowledged_by || t("none"), at: fmtTime(entry.acknowledged_at) })));
    }
    var actions = el("div", "actions");
    if (entry.referral_id) {
      actions.appendChild(button(t("entry.open"), "open", function () { openEntry(entry); }));
    }
    if (isAlert(entry) && !entry.acknowledged_at) {
      actions.appendChild(button(t("entry.ack"), "danger ack", function (event) { acknowledge(entry, event.target); }));
    }
    if (unread) {
      actions.appendChild(button(t("entry.read"), "ghost read", function (event) { markRead(entry, event.target); }));
    }
    if (actions.childNodes.length) { item.appendChild(actions); }
    return item;
  }

  // A P0 notice that someone must take on: its alert is re-sent and escalated until then.
  function isAlert(entry) {
    var alerts = state.reference && state.reference.alerts;
    return !!alerts && alerts.urgency.indexOf(entry.urgency) >= 0 && alerts.kinds.indexOf(entry.kind) >= 0;
  }

  function replaceEntry(updated) {
    var before = null;
    state.entries = state.entries.map(function (e) {
      if (e.notification_id !== updated.notification_id) { return e; }
      before = e;
      return updated;
    });
    if (before && !before.read_at && updated.read_at) { state.unread = Math.max(0, state.unread - 1); }
    renderInbox();
  }

  function markRead(entry, control) {
    if (control) { busy(control, true); }
    return api("inbox/" + encodeURIComponent(entry.notification_id) + "/read", { method: "POST" })
      .then(replaceEntry).catch(function () { if (control) { busy(control, false); } });
  }

  function acknowledge(entry, control) {
    busy(control, true);
    api("inbox/" + encodeURIComponent(entry.notification_id) + "/ack", { method: "POST" }).then(function (updated) {
      replaceEntry(updated);
      showMessage("app-message", "ok", "entry.ack.done");
    }).catch(function () { busy(control, false); });
  }

  function openEntry(entry) {
    if (!entry.read_at) { markRead(entry); }
    openReferral(entry.referral_id);
  }

  // ---- live updates -------------------------------------------------------------------------

  function setLive(mode) {
    state.live = mode;
    var node = $("live");
    node.hidden = false;
    node.className = "live " + mode;
    $("live-text").textContent = t("live." + mode);
    node.title = mode === "on" ? t("live.on.title") : mode === "off" ? t("live.off.title") : "";
  }

  function stopStream() {
    if (state.streamTimer) { clearTimeout(state.streamTimer); }
    state.streamTimer = null;
    if (state.stream) { state.stream.abort(); }
    state.stream = null;
    state.streamRetry = 0;
    state.live = null;
  }

  // GET /inbox/stream with the bearer token; each "event: entry" carries one entry as JSON.
  // After a break the inbox is fetched again, so nothing said in between is missed.
  function connectStream() {
    if (state.stream || !punte.token()) { return; }
    var controller = new AbortController();
    state.stream = controller;
    if (state.live !== "off") { setLive("connecting"); }
    fetch(punte.url("inbox/stream"), {
      headers: { "Authorization": "Bearer " + punte.token(), "Accept": "text/event-stream" },
      credentials: "same-origin", cache: "no-store", signal: controller.signal
    }).then(function (response) {
      if (response.status === 401) { punte.signOut("err.401"); return null; }
      if (!response.ok || !response.body) { throw new Error("stream " + response.status); }
      setLive("on");
      if (state.streamRetry > 0) { loadInbox(true); }
      state.streamRetry = 0;
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) { return null; }
          buffer = (buffer + decoder.decode(chunk.value, { stream: true })).replace(/\r\n/g, "\n");
          var cut = buffer.indexOf("\n\n");
          while (cut >= 0) {
            dispatch(buffer.slice(0, cut));
            buffer = buffer.slice(cut + 2);
            cut = buffer.indexOf("\n\n");
          }
          return pump();
        });
      }
      return pump();
    }).catch(function () { /* retried below */ }).then(function () {
      if (state.stream !== controller) { return; } // stopped, or replaced
      state.stream = null;
      if (controller.signal.aborted || !punte.token()) { return; }
      setLive("off");
      state.streamRetry += 1;
      var wait = Math.min(30000, 500 * Math.pow(2, Math.min(state.streamRetry, 6)));
      state.streamTimer = setTimeout(function () { state.streamTimer = null; connectStream(); }, wait);
    });
  }

  // One server-sent event (text/event-stream): "event:" and "data:" fields, ":" comments.
  function dispatch(block) {
    var name = "message";
    var data = [];
    block.split("\n").forEach(function (line) {
      if (!line || line.charAt(0) === ":") { return; }
      var colon = line.indexOf(":");
      var field = colon < 0 ? line : line.slice(0, colon);
      var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") { name = value; } else if (field === "data") { data.push(value); }
    });
    if (name !== "entry" || !data.length) { return; }
    var entry;
    try { entry = JSON.parse(data.join("\n")); } catch (e) { return; }
    if (entry && entry.notification_id) { onLiveEntry(entry); }
  }

  function onLiveEntry(entry) {
    var known = state.entries.some(function (e) { return e.notification_id === entry.notification_id; });
    if (known) { replaceEntry(entry); return; }
    if (!entry.read_at) { state.unread += 1; }
    if (matches(entry)) {
      state.entries.unshift(entry);
      state.entries = state.entries.slice(0, LIMIT);
      state.fresh[entry.notification_id] = true;
      setTimeout(function () { delete state.fresh[entry.notification_id]; }, 3000);
    }
    renderInbox();
    announce(t("live.new", { text: inLanguage(entry) }));
    if (state.referrals && entry.referral_id) { loadReferrals(true); }
  }

  // ---- the team's referrals ------------------------------------------------------------------

  function loadReferrals(quiet) {
    return api("ui/api/referrals/inbox", {
      params: { owner: $("r-owner").value, include_closed: $("r-closed").checked ? "true" : "" }, keepMessage: quiet
    }).then(function (body) {
      state.referrals = body;
      renderReferrals();
    }).catch(function () { /* shown already */ });
  }

  function renderReferrals() {
    var list = $("referrals");
    list.textContent = "";
    if (!state.referrals) { $("referrals-summary").textContent = ""; return; }
    state.referrals.forEach(function (r) { list.appendChild(referralCard(r)); });
    if (!state.referrals.length) { list.appendChild(el("li", "empty", t("referrals.empty"))); }
    $("referrals-summary").textContent = t("referrals.summary", { count: state.referrals.length });
  }

  function categories(r) { return r.categories.map(function (c) { return label("categories", c); }).join(", "); }

  function referralCard(r) {
    var item = el("li", "item referral-item " + r.urgency);
    item.setAttribute("data-referral", r.referral_id);
    var head = el("div", "item-head");
    head.appendChild(el("span", "badge " + r.urgency, r.urgency));
    head.appendChild(el("span", "badge state", t("state." + r.state)));
    var time = el("time", null, fmtTime(r.requested_at));
    time.dateTime = r.requested_at;
    head.appendChild(time);
    item.appendChild(head);
    if (r.do_not_contact) { item.appendChild(el("p", "dnc", t("dnc"))); }
    item.appendChild(el("p", "text", categories(r)));
    item.appendChild(el("p", "meta", t("referrals.from", { who: institutionName(r.referrer) }) + " · " +
      (r.owner ? t("referrals.owner", { who: r.owner }) : t("referrals.unowned"))));
    item.appendChild(el("p", "meta mono", t("entry.case", { id: r.case_id })));
    var actions = el("div", "actions");
    actions.appendChild(button(t("entry.open"), "open", function () { openReferral(r.referral_id); }));
    item.appendChild(actions);
    return item;
  }

  // ---- one referral ---------------------------------------------------------------------------

  function referralPath(id) { return "ui/api/referrals/" + encodeURIComponent(id); }

  function openReferral(id) {
    state.referral = null;
    $("app-view").hidden = true;
    $("referral-view").hidden = false;
    clearMessage("ref-message");
    $("ref-title").textContent = t("ref.title", { id: id });
    $("ref-state").textContent = t("ref.loading");
    $("ref-actions").hidden = true;
    $("ref-history").textContent = "";
    $("reject-form").hidden = true;
    $("complete-form").hidden = true;
    $("note-form").hidden = true;
    window.scrollTo(0, 0);
    loadReferral(id, false);
  }

  function loadReferral(id, keepMessage) {
    return api(referralPath(id), { where: "ref-message", keepMessage: keepMessage }).then(function (body) {
      state.referral = body;
      renderReferral(body);
    }).catch(function () { $("ref-state").textContent = ""; });
  }

  function closeReferral() {
    state.referral = null;
    $("referral-view").hidden = true;
    $("app-view").hidden = false;
    clearMessage("ref-message");
    if (state.tab === "referrals") { loadReferrals(true); }
  }

  // The catalogue's reasons for one command, in the catalogue's order.
  function reasonsFor(command) {
    var all = (state.reference && state.reference.reasons) || {};
    return Object.keys(all).filter(function (code) { return all[code].commands.indexOf(command) >= 0; });
  }

  function noteRequired(code) {
    var all = (state.reference && state.reference.reasons) || {};
    return Boolean(all[code] && all[code].note_required);
  }

  // A note's text for a full view; otherwise that it exists (or was erased).
  function noteText(step, notes) {
    if (step.note) { return t("said.note", { text: step.note }); }
    var found = (notes || []).filter(function (n) { return n.note_id === step.note_id; })[0];
    return found && found.erased ? t("said.note.erased") : t("said.note.hidden");
  }

  function renderReferral(r) {
    var me = punte.claims() || {};
    var receiver = me.institution === r.to;
    var open = OPEN.indexOf(r.state) >= 0;
    $("ref-title").textContent = t("ref.title", { id: r.referral_id });
    var stateLine = $("ref-state");
    stateLine.textContent = "";
    stateLine.appendChild(el("span", "badge state", t("state." + r.state)));
    stateLine.appendChild(document.createTextNode(" "));
    stateLine.appendChild(el("span", "badge " + r.urgency, r.urgency));
    stateLine.setAttribute("data-state", r.state);
    var dnc = $("ref-dnc");
    dnc.textContent = r.do_not_contact ? t("dnc.long") : "";
    dnc.hidden = !r.do_not_contact;
    $("ref-case").textContent = r.case_id;
    $("ref-categories").textContent = categories(r);
    $("ref-from").textContent = institutionName(r.referrer);
    $("ref-to").textContent = institutionName(r.to);
    $("ref-owner").textContent = r.owner || t("referrals.unowned");
    $("ref-basis").textContent = named("basis.", r.legal_basis);
    $("ref-requested").textContent = fmtTime(r.requested_at);
    var deadlines = $("ref-deadlines");
    deadlines.textContent = "";
    var names = open ? Object.keys(r.deadlines || {}) : [];
    if (!names.length) { deadlines.textContent = t("none"); }
    names.forEach(function (name) {
      deadlines.appendChild(el("div", null, named("deadline.", name) + ": " + fmtTime(r.deadlines[name])));
    });

    var can = {
      claim: receiver && open && r.owner !== me.sub,
      acknowledge: receiver && r.state === "requested",
      accept: receiver && (r.state === "requested" || r.state === "received"),
      reject: receiver && (r.state === "requested" || r.state === "received"),
      start: receiver && r.state === "accepted",
      complete: receiver && r.state === "in-progress"
    };
    Object.keys(can).forEach(function (name) {
      var control = $("do-" + name);
      control.hidden = !can[name];
      busy(control, false);
    });
    $("ref-actions").hidden = !Object.keys(can).some(function (name) { return can[name]; });
    if (!can.reject) { $("reject-form").hidden = true; }
    if (!can.complete) { $("complete-form").hidden = true; }
    $("note-form").hidden = r.state === "entered-in-error";

    var list = $("ref-history");
    list.textContent = "";
    (r.history || []).forEach(function (step) {
      var item = el("li");
      var time = el("time", null, fmtTime(step.at));
      time.dateTime = step.at;
      item.appendChild(time);
      var what = named("step.", step.command);
      if (step.from && step.to && step.from !== step.to) {
        what += " (" + t("state." + step.from) + " → " + t("state." + step.to) + ")";
      }
      item.appendChild(el("p", "step", what));
      var who = [step.by ? institutionName(step.by) : "Punte", step.person].filter(Boolean).join(" · ");
      item.appendChild(el("p", "who", who));
      if (step.reason) { item.appendChild(el("p", "said", t("said.reason", { text: label("reasons", step.reason) }))); }
      if (step.outcome) { item.appendChild(el("p", "said", t("said.outcome", { text: label("outcomes", step.outcome) }))); }
      if (step.note_id) { item.appendChild(el("p", "said", noteText(step, r.notes))); }
      list.appendChild(item);
    });
    if (!(r.history || []).length) { list.appendChild(el("li", "none", t("ref.nohistory"))); }
  }

  // One step on the open referral, through this service's forwarding to the referral API.
  function send(command, fields, control) {
    var r = state.referral;
    if (!r) { return Promise.resolve(null); }
    document.querySelectorAll("#referral-view button").forEach(function (b) { b.disabled = true; });
    if (control) { control.setAttribute("aria-busy", "true"); }
    return api(referralPath(r.referral_id) + "/commands", {
      method: "POST", body: Object.assign({ command: command }, fields || {}), where: "ref-message"
    }).then(function (updated) {
      state.referral = updated;
      renderReferral(updated);
      showMessage("ref-message", "ok", "done." + command);
      return updated;
    }, function () {
      // Refused (shown already): show the referral as it stands now.
      return loadReferral(r.referral_id, true).then(function () { return null; });
    }).then(function (result) {
      document.querySelectorAll("#referral-view button").forEach(function (b) {
        b.disabled = false;
        b.removeAttribute("aria-busy");
      });
      return result;
    });
  }

  // A <select> of `codes`, each shown as `text(code)`, after a "choose" option; the choice
  // already made stays.
  function fillSelect(select, choose, codes, text) {
    var chosen = select.value;
    select.textContent = "";
    var none = el("option", null, t(choose));
    none.value = "";
    select.appendChild(none);
    codes.forEach(function (code) {
      var option = el("option", null, text(code));
      option.value = code;
      select.appendChild(option);
    });
    select.value = chosen;
  }

  function fillChoices() {
    fillSelect($("reject-code"), "reject.choose", reasonsFor("reject"), function (code) { return label("reasons", code); });
    fillSelect($("complete-outcome"), "complete.choose", Object.keys((state.reference && state.reference.outcomes) || {}),
               function (code) { return label("outcomes", code); });
  }

  function onReject(event) {
    event.preventDefault();
    var code = $("reject-code").value;
    var detail = $("reject-detail").value.trim();
    if (!code) { $("reject-code").focus(); return; }
    if (noteRequired(code) && !detail) {
      showMessage("ref-message", "error", "reject.detail.missing");
      $("reject-detail").focus();
      return;
    }
    var fields = { reason: code };
    if (detail) { fields.note = detail; }
    send("reject", fields, event.submitter).then(function (done) {
      if (done) {
        $("reject-form").reset();
        $("reject-form").hidden = true;
      }
    });
  }

  function onComplete(event) {
    event.preventDefault();
    var outcome = $("complete-outcome").value;
    if (!outcome) { $("complete-outcome").focus(); return; }
    send("complete", { outcome: outcome }, event.submitter).then(function (done) {
      if (done) { $("complete-form").hidden = true; }
    });
  }

  function onNote(event) {
    event.preventDefault();
    var note = $("note-text").value.trim();
    if (!note) { $("note-text").focus(); return; }
    send("note", { note: note }, event.submitter).then(function (done) {
      if (done) { $("note-text").value = ""; }
    });
  }

  // Reject… and Finalizez… each open their form (and close the other's).
  function toggleForm(id, first) {
    var other = id === "reject-form" ? "complete-form" : "reject-form";
    $(other).hidden = true;
    $(id).hidden = !$(id).hidden;
    if (!$(id).hidden) { $(first).focus(); }
  }

  // ---- start -----------------------------------------------------------------------------

  var selectTab = punte.tabs(["inbox", "referrals"], function (name) {
    state.tab = name;
    if (name === "referrals") { loadReferrals(); }
  });
  ["filters", "ref-filters"].forEach(function (id) {
    $(id).addEventListener("submit", function (event) { event.preventDefault(); });
  });
  $("f-urgency").addEventListener("change", function () { loadInbox(); });
  $("f-kind").addEventListener("change", function () { loadInbox(); });
  $("f-unread").addEventListener("change", renderInbox);
  $("r-owner").addEventListener("change", function () { loadReferrals(); });
  $("r-closed").addEventListener("change", function () { loadReferrals(); });
  $("back").addEventListener("click", closeReferral);
  ["claim", "acknowledge", "accept", "start"].forEach(function (command) {
    $("do-" + command).addEventListener("click", function (event) { send(command, {}, event.target); });
  });
  $("do-reject").addEventListener("click", function () { toggleForm("reject-form", "reject-code"); });
  $("do-complete").addEventListener("click", function () { toggleForm("complete-form", "complete-outcome"); });
  document.querySelectorAll(".subform .cancel").forEach(function (control) {
    control.addEventListener("click", function () { control.closest("form").hidden = true; });
  });
  $("reject-form").addEventListener("submit", onReject);
  $("complete-form").addEventListener("submit", onComplete);
  $("note-form").addEventListener("submit", onNote);
  punte.start();
})();
