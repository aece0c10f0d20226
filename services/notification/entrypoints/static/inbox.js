/* Punte — the case managers' web inbox. Plain JavaScript, no dependencies, no build step.
 * Romanian first, English available. The token lives in sessionStorage (this tab only)
 * and goes as a bearer token to the inbox API and, through this service's /ui/api/
 * forwarding, to the referral API. Live updates come from GET /inbox/stream, read with
 * fetch() (EventSource cannot send the Authorization header) and parsed here as
 * server-sent events. Data from the APIs only ever goes into the page with textContent,
 * never as HTML. */
(function () {
  "use strict";

  var TEXT = {
    ro: {
      "title": "Inbox responsabil de caz",
      "subtitle": "Case manager's inbox",
      "logout": "Ieșire",
      "login.title": "Autentificare responsabil de caz",
      "login.username": "Utilizator",
      "login.password": "Parolă",
      "login.submit": "Intră",
      "login.busy": "Se verifică…",
      "login.hint": "Pentru responsabilii de caz ai instituțiilor din rețea. Pagina arată doar referința cazului, categoriile și urgența: niciodată numele, CNP-ul sau adresa copilului.",
      "who": "Autentificat: {name}",
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
      "done.note": "Nota a fost adăugată; cealaltă instituție o vede.",
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
      "step.by": "{who}",
      "said.reason": "Motiv: {text}",
      "said.outcome": "Rezultat: {text}",
      "said.note": "Notă: {text}",
      "reject.code": "Motivul refuzului",
      "reject.choose": "— alegeți —",
      "reject.detail": "Precizări (opțional; obligatoriu la „Alt motiv”)",
      "reject.submit": "Refuz trimiterea",
      "reject.detail.missing": "Precizați motivul.",
      "reason.not-competent": "Nu este de competența instituției noastre",
      "reason.outside-area": "Copilul nu locuiește în aria noastră",
      "reason.already-known": "Cazul este deja în lucru la noi",
      "reason.insufficient-information": "Informații insuficiente pentru a acționa",
      "reason.no-capacity": "Fără capacitate în acest moment",
      "reason.other": "Alt motiv",
      "complete.outcome": "Rezultatul",
      "complete.choose": "— alegeți —",
      "complete.submit": "Finalizez trimiterea",
      "cancel": "Renunț",
      "note.label": "Notă / feedback pentru cealaltă instituție",
      "note.placeholder": "ex. Evaluarea inițială este programată.",
      "note.hint": "Nu scrieți nume, CNP sau adrese: nota ajunge la instituția parteneră.",
      "note.submit": "Adaugă nota",
      "none": "—",
      "footer": "Fiecare consultare a unui caz este înregistrată în jurnalul de audit.",
      "err.401": "Sesiunea a expirat sau tokenul nu este valid. Autentificați-vă din nou.",
      "err.403": "Acces refuzat.",
      "err.404": "Nu a fost găsit.",
      "err.409": "Operația nu este permisă acum.",
      "err.422": "Date invalide.",
      "err.502": "Un serviciu a dat un răspuns neașteptat.",
      "err.503": "Serviciul nu este disponibil momentan. Încercați din nou.",
      "err.network": "Serverul nu poate fi contactat.",
      "err.other": "Eroare ({status})."
    },
    en: {
      "title": "Case manager's inbox",
      "subtitle": "Inbox responsabil de caz",
      "logout": "Sign out",
      "login.title": "Case manager sign-in",
      "login.username": "Username",
      "login.password": "Password",
      "login.submit": "Sign in",
      "login.busy": "Checking…",
      "login.hint": "For the case managers of the network's institutions. The page shows only the case reference, categories and urgency: never the child's name, CNP or address.",
      "who": "Signed in: {name}",
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
      "done.note": "The note was added; the other institution sees it.",
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
      "step.by": "{who}",
      "said.reason": "Reason: {text}",
      "said.outcome": "Outcome: {text}",
      "said.note": "Note: {text}",
      "reject.code": "Reason for rejecting",
      "reject.choose": "— choose —",
      "reject.detail": "Details (optional; required for “Other reason”)",
      "reject.submit": "Reject the referral",
      "reject.detail.missing": "Explain the reason.",
      "reason.not-competent": "Not within our institution's remit",
      "reason.outside-area": "The child does not live in our area",
      "reason.already-known": "We already work on this case",
      "reason.insufficient-information": "Not enough information to act",
      "reason.no-capacity": "No capacity at the moment",
      "reason.other": "Other reason",
      "complete.outcome": "Outcome",
      "complete.choose": "— choose —",
      "complete.submit": "Complete the referral",
      "cancel": "Cancel",
      "note.label": "Note / feedback for the other institution",
      "note.placeholder": "e.g. The initial assessment is scheduled.",
      "note.hint": "Do not write names, CNPs or addresses: the note goes to the partner institution.",
      "note.submit": "Add the note",
      "none": "—",
      "footer": "Every time a case is opened it is recorded in the audit trail.",
      "err.401": "The session expired or the token is not valid. Please sign in again.",
      "err.403": "Access denied.",
      "err.404": "Not found.",
      "err.409": "That is not allowed now.",
      "err.422": "Invalid input.",
      "err.502": "A service gave an unexpected answer.",
      "err.503": "The service is unavailable right now. Try again.",
      "err.network": "The server cannot be reached.",
      "err.other": "Error ({status})."
    }
  };

  // Why a case manager rejects a referral: sent as "<code>: <details or the Romanian label>"
  // in the command's free-text reason, so both a person and a program can read it.
  var REJECT_CODES = ["not-competent", "outside-area", "already-known", "insufficient-information",
                      "no-capacity", "other"];
  var OPEN = ["requested", "received", "accepted", "in-progress", "on-hold"];
  var LIMIT = 100;
  var TOKEN_KEY = "punte.inbox.token";
  var LANG_KEY = "punte.inbox.lang";
  var BASE = new URL(".", document.baseURI); // the page is /ui, so the APIs are next to it
  var state = {
    lang: "ro", entries: [], unread: 0, institution: null, fresh: {}, messages: {},
    referrals: null, referral: null, reference: null, tab: "inbox",
    stream: null, streamTimer: null, streamRetry: 0, live: null, expiry: null
  };

  function $(id) { return document.getElementById(id); }

  function t(key, values) {
    var text = (TEXT[state.lang] && TEXT[state.lang][key]) || TEXT.ro[key] || key;
    if (values) {
      Object.keys(values).forEach(function (name) {
        text = text.split("{" + name + "}").join(String(values[name]));
      });
    }
    return text;
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function button(label, className, onClick) {
    var b = el("button", className, label);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  function fmtTime(iso) {
    if (!iso) { return t("none"); }
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return iso; }
    return d.toLocaleString(state.lang === "ro" ? "ro-RO" : "en-GB", {
      year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit"
    });
  }

  function label(group, id) {
    var known = state.reference && state.reference[group] && state.reference[group][id];
    if (!known) { return id; }
    return typeof known === "string" ? known : (known[state.lang] || known.ro || id);
  }

  function institutionName(id) {
    var name = label("institutions", id);
    return name && name !== id ? name + " (" + id + ")" : id;
  }

  // ---- language ---------------------------------------------------------------------------

  function applyLanguage() {
    document.documentElement.lang = state.lang;
    document.querySelectorAll("[data-i18n]").forEach(function (node) {
      node.textContent = t(node.getAttribute("data-i18n"));
    });
    document.querySelectorAll("[data-i18n-placeholder]").forEach(function (node) {
      node.setAttribute("placeholder", t(node.getAttribute("data-i18n-placeholder")));
    });
    var subtitle = document.querySelector(".subtitle");
    if (subtitle) { subtitle.lang = state.lang === "ro" ? "en" : "ro"; }
    var lang = $("lang");
    lang.setAttribute("aria-pressed", state.lang === "en" ? "true" : "false");
    lang.querySelectorAll("span").forEach(function (span) {
      span.classList.toggle("on", span.textContent.toLowerCase() === state.lang);
    });
    Object.keys(state.messages).forEach(function (where) { showMessage.apply(null, [where].concat(state.messages[where])); });
    refreshWhoami();
    fillChoices();
    if (state.live) { setLive(state.live); }
    if (!$("app-view").hidden || !$("referral-view").hidden) {
      renderInbox();
      renderReferrals();
    }
    if (state.referral) { renderReferral(state.referral); }
    refreshTitle();
  }

  function toggleLanguage() {
    state.lang = state.lang === "ro" ? "en" : "ro";
    try { localStorage.setItem(LANG_KEY, state.lang); } catch (e) { /* private mode */ }
    applyLanguage();
  }

  function refreshTitle() {
    var prefix = state.unread > 0 && token() ? "(" + state.unread + ") " : "";
    document.title = prefix + "Punte — " + t("title") + " / " + t("subtitle");
  }

  // ---- messages -----------------------------------------------------------------------------

  // The text of a refusal in the reader's language: {message_ro, message_en} from the
  // referral service and the sign-in, or one "Romanian / English" message.
  function detailText(detail) {
    if (!detail || typeof detail !== "object" || Array.isArray(detail)) { return ""; }
    if (detail.message_ro || detail.message_en) {
      return state.lang === "ro" ? (detail.message_ro || detail.message_en) : (detail.message_en || detail.message_ro);
    }
    if (typeof detail.message === "string") {
      var parts = detail.message.split(" / ");
      return parts.length === 2 ? parts[state.lang === "ro" ? 0 : 1] : detail.message;
    }
    return "";
  }

  // A message is a text key (with values), the API's own refusal, or both.
  function showMessage(where, kind, key, values, detail) {
    state.messages[where] = [kind, key, values, detail];
    var node = $(where);
    var own = detailText(detail);
    var text = key ? t(key, values) : "";
    if (own) { text = text && key.indexOf("err.") !== 0 ? text + " " + own : own; }
    node.textContent = text;
    node.className = "message " + kind;
    node.hidden = !text;
  }

  function clearMessage(where) {
    delete state.messages[where];
    var node = $(where);
    node.hidden = true;
    node.textContent = "";
  }

  function announce(text) {
    var node = $("announce");
    node.textContent = "";
    setTimeout(function () { node.textContent = text; }, 50);
  }

  // ---- token ------------------------------------------------------------------------------

  function token() { try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; } }

  function claims() {
    var raw = token();
    if (!raw) { return null; }
    try {
      var part = raw.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      while (part.length % 4) { part += "="; }
      var bytes = Uint8Array.from(atob(part), function (c) { return c.charCodeAt(0); });
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) { return null; }
  }

  function refreshWhoami() {
    var c = claims();
    if (!c) { $("whoami").textContent = ""; return; }
    var name = c.name || c.sub || "";
    if (c.institution) {
      var where = label("institutions", c.institution);
      name += where && where !== c.institution && name.indexOf(where) < 0 ? " — " + institutionName(c.institution) : " (" + c.institution + ")";
    }
    $("whoami").textContent = t("who", { name: name });
  }

  function signedIn(value) {
    try { sessionStorage.setItem(TOKEN_KEY, value); } catch (e) { /* ignore */ }
    showApp();
  }

  function signOut(messageKey) {
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ }
    if (state.expiry) { clearTimeout(state.expiry); }
    state.expiry = null;
    stopStream();
    state.entries = [];
    state.unread = 0;
    state.referrals = null;
    state.referral = null;
    state.messages = {};
    $("entries").textContent = "";
    $("referrals").textContent = "";
    $("app-view").hidden = true;
    $("referral-view").hidden = true;
    $("logout").hidden = true;
    $("live").hidden = true;
    $("login-view").hidden = false;
    $("password").value = "";
    ["app-message", "ref-message"].forEach(clearMessage);
    if (messageKey) { showMessage("login-message", "error", messageKey); } else { clearMessage("login-message"); }
    refreshTitle();
    $("username").focus();
  }

  function showApp() {
    // The stream outlives a token's checks: at its expiry the page signs out by itself.
    var c = claims();
    if (state.expiry) { clearTimeout(state.expiry); }
    if (c && c.exp) { state.expiry = setTimeout(function () { signOut("err.401"); }, Math.max(0, c.exp * 1000 - Date.now())); }
    $("login-view").hidden = true;
    $("app-view").hidden = false;
    $("logout").hidden = false;
    clearMessage("login-message");
    refreshWhoami();
    loadReference();
    selectTab("inbox");
    // The list first, then the live stream (which only brings what is new from now on).
    loadInbox().then(connectStream);
  }

  // ---- API ------------------------------------------------------------------------------

  // fetch with the token; resolves to the JSON body when ok, else shows the refusal in
  // `where` (in the reader's language) and rejects. A 401 signs the page out.
  function api(path, options) {
    options = options || {};
    var url = new URL(path, BASE);
    var params = options.params || {};
    Object.keys(params).forEach(function (name) {
      var value = params[name];
      if (value !== undefined && value !== null && value !== "") { url.searchParams.set(name, value); }
    });
    var headers = { "Accept": "application/json" };
    if (token()) { headers["Authorization"] = "Bearer " + token(); }
    var init = { method: options.method || "GET", headers: headers, credentials: "same-origin", cache: "no-store" };
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    var where = options.where || "app-message";
    if (!options.keepMessage) { clearMessage(where); }
    return fetch(url, init).catch(function () {
      showMessage(where, "error", "err.network");
      throw new Error("network");
    }).then(function (response) {
      return response.text().then(function (text) {
        var body = null;
        try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
        if (response.ok) { return body; }
        var detail = body && typeof body.detail === "object" && !Array.isArray(body.detail) ? body.detail : null;
        if (response.status === 401) {
          signOut("err.401");
        } else if (detail && detailText(detail)) {
          showMessage(where, "error", null, null, detail);
        } else if (TEXT.ro["err." + response.status]) {
          showMessage(where, "error", "err." + response.status);
        } else {
          showMessage(where, "error", "err.other", { status: response.status });
        }
        var error = new Error("http " + response.status);
        error.status = response.status;
        error.detail = detail;
        throw error;
      });
    });
  }

  function busy(node, on) {
    node.disabled = on;
    node.setAttribute("aria-busy", on ? "true" : "false");
  }

  function loadReference() {
    if (state.reference) { return; }
    api("ui/api/reference", { keepMessage: true }).then(function (body) {
      state.reference = body;
      fillChoices();
      refreshWhoami();
      renderInbox();
      renderReferrals();
      if (state.referral) { renderReferral(state.referral); }
    }).catch(function () { /* labels fall back to ids */ });
  }

  // ---- sign in ----------------------------------------------------------------------------

  function onLogin(event) {
    event.preventDefault();
    var submit = event.target.querySelector("button[type=submit]");
    busy(submit, true);
    submit.textContent = t("login.busy");
    clearMessage("login-message");
    fetch(new URL("ui/login", BASE), {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify({ username: $("username").value.trim(), password: $("password").value })
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (response.ok && body.access_token) {
          $("password").value = "";
          signedIn(body.access_token);
          return;
        }
        var detail = body && typeof body.detail === "object" && !Array.isArray(body.detail) ? body.detail : null;
        if (detail && detailText(detail)) {
          showMessage("login-message", "error", null, null, detail);
        } else if (TEXT.ro["err." + response.status]) {
          showMessage("login-message", "error", "err." + response.status);
        } else {
          showMessage("login-message", "error", "err.other", { status: response.status });
        }
      });
    }, function () {
      showMessage("login-message", "error", "err.network");
    }).then(function () {
      busy(submit, false);
      submit.textContent = t("login.submit");
    });
  }

  // ---- the inbox --------------------------------------------------------------------------

  function filters() {
    return { urgency: $("f-urgency").value, kind: $("f-kind").value, unread: $("f-unread").checked };
  }

  function loadInbox(keepMessage) {
    var f = filters();
    return api("inbox", { params: { urgency: f.urgency, kind: f.kind, limit: LIMIT }, keepMessage: keepMessage })
      .then(function (body) {
        state.entries = body.entries;
        state.unread = body.unread;
        state.institution = body.institution;
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
    refreshTitle();
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
    item.appendChild(el("p", "text", state.lang === "ro" ? entry.summary_ro : entry.summary_en));
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
    if (state.stream || !token()) { return; }
    var controller = new AbortController();
    state.stream = controller;
    if (state.live !== "off") { setLive("connecting"); }
    fetch(new URL("inbox/stream", BASE), {
      headers: { "Authorization": "Bearer " + token(), "Accept": "text/event-stream" },
      credentials: "same-origin", cache: "no-store", signal: controller.signal
    }).then(function (response) {
      if (response.status === 401) { signOut("err.401"); return null; }
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
      if (controller.signal.aborted || !token()) { return; }
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
    announce(t("live.new", { text: state.lang === "ro" ? entry.summary_ro : entry.summary_en }));
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
    item.appendChild(el("p", "text", r.categories.map(function (c) { return label("categories", c); }).join(", ")));
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

  function reasonText(reason) {
    var found = /^([a-z-]+): ([\s\S]*)$/.exec(reason || "");
    if (!found || REJECT_CODES.indexOf(found[1]) < 0) { return reason; }
    var named = t("reason." + found[1]);
    var rest = found[2];
    return rest && rest !== TEXT.ro["reason." + found[1]] ? named + " — " + rest : named;
  }

  function renderReferral(r) {
    var me = claims() || {};
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
    $("ref-categories").textContent = r.categories.map(function (c) { return label("categories", c); }).join(", ");
    $("ref-from").textContent = institutionName(r.referrer);
    $("ref-to").textContent = institutionName(r.to);
    $("ref-owner").textContent = r.owner || t("referrals.unowned");
    $("ref-basis").textContent = TEXT.ro["basis." + r.legal_basis] ? t("basis." + r.legal_basis) : r.legal_basis;
    $("ref-requested").textContent = fmtTime(r.requested_at);
    var deadlines = $("ref-deadlines");
    deadlines.textContent = "";
    var names = open ? Object.keys(r.deadlines || {}) : [];
    if (!names.length) { deadlines.textContent = t("none"); }
    names.forEach(function (name) {
      var known = TEXT.ro["deadline." + name] ? t("deadline." + name) : name;
      deadlines.appendChild(el("div", null, known + ": " + fmtTime(r.deadlines[name])));
    });

    var can = {
      claim: receiver && open && r.owner !== me.sub,
      acknowledge: receiver && r.state === "requested",
      accept: receiver && (r.state === "requested" || r.state === "received"),
      reject: receiver && (r.state === "requested" || r.state === "received"),
      start: receiver && r.state === "accepted",
      complete: receiver && r.state === "in-progress"
    };
    var any = false;
    Object.keys(can).forEach(function (name) {
      var control = $("do-" + name);
      control.hidden = !can[name];
      busy(control, false);
      any = any || can[name];
    });
    $("ref-actions").hidden = !any;
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
      var what = TEXT.ro["step." + step.command] ? t("step." + step.command) : step.command;
      if (step.from && step.to && step.from !== step.to) {
        what += " (" + t("state." + step.from) + " → " + t("state." + step.to) + ")";
      }
      item.appendChild(el("p", "step", what));
      var who = [step.by ? institutionName(step.by) : "Punte", step.person].filter(Boolean).join(" · ");
      item.appendChild(el("p", "who", who));
      if (step.reason) { item.appendChild(el("p", "said", t("said.reason", { text: reasonText(step.reason) }))); }
      if (step.outcome) { item.appendChild(el("p", "said", t("said.outcome", { text: label("outcomes", step.outcome) }))); }
      if (step.note) { item.appendChild(el("p", "said", t("said.note", { text: step.note }))); }
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

  function fillChoices() {
    var reject = $("reject-code");
    var chosen = reject.value;
    reject.textContent = "";
    var first = el("option", null, t("reject.choose"));
    first.value = "";
    reject.appendChild(first);
    REJECT_CODES.forEach(function (code) {
      var option = el("option", null, t("reason." + code));
      option.value = code;
      reject.appendChild(option);
    });
    reject.value = chosen;
    var outcome = $("complete-outcome");
    var picked = outcome.value;
    outcome.textContent = "";
    var none = el("option", null, t("complete.choose"));
    none.value = "";
    outcome.appendChild(none);
    var outcomes = (state.reference && state.reference.outcomes) || {};
    Object.keys(outcomes).forEach(function (code) {
      var option = el("option", null, label("outcomes", code));
      option.value = code;
      outcome.appendChild(option);
    });
    outcome.value = picked;
  }

  function onReject(event) {
    event.preventDefault();
    var code = $("reject-code").value;
    var detail = $("reject-detail").value.trim();
    if (!code) { $("reject-code").focus(); return; }
    if (code === "other" && !detail) {
      showMessage("ref-message", "error", "reject.detail.missing");
      $("reject-detail").focus();
      return;
    }
    var reason = code + ": " + (detail || TEXT.ro["reason." + code]);
    send("reject", { reason: reason }, event.submitter).then(function (done) {
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

  // ---- tabs -------------------------------------------------------------------------------

  function selectTab(name) {
    state.tab = name;
    ["inbox", "referrals"].forEach(function (tab) {
      var on = tab === name;
      $("tab-" + tab).setAttribute("aria-selected", on ? "true" : "false");
      $("tab-" + tab).tabIndex = on ? 0 : -1;
      $("panel-" + tab).hidden = !on;
    });
    if (name === "referrals") { loadReferrals(); }
  }

  // ---- start -----------------------------------------------------------------------------

  function start() {
    try { state.lang = localStorage.getItem(LANG_KEY) === "en" ? "en" : "ro"; } catch (e) { state.lang = "ro"; }
    $("lang").addEventListener("click", toggleLanguage);
    $("logout").addEventListener("click", function () { signOut(null); });
    $("login-form").addEventListener("submit", onLogin);
    $("filters").addEventListener("submit", function (event) { event.preventDefault(); });
    $("f-urgency").addEventListener("change", function () { loadInbox(); });
    $("f-kind").addEventListener("change", function () { loadInbox(); });
    $("f-unread").addEventListener("change", renderInbox);
    $("ref-filters").addEventListener("submit", function (event) { event.preventDefault(); });
    $("r-owner").addEventListener("change", function () { loadReferrals(); });
    $("r-closed").addEventListener("change", function () { loadReferrals(); });
    ["inbox", "referrals"].forEach(function (tab) {
      $("tab-" + tab).addEventListener("click", function () { selectTab(tab); });
    });
    $("tab-inbox").parentNode.addEventListener("keydown", function (event) {
      if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") { return; }
      var next = state.tab === "inbox" ? "referrals" : "inbox";
      selectTab(next);
      $("tab-" + next).focus();
    });
    $("back").addEventListener("click", closeReferral);
    $("do-claim").addEventListener("click", function (event) { send("claim", {}, event.target); });
    $("do-acknowledge").addEventListener("click", function (event) { send("acknowledge", {}, event.target); });
    $("do-accept").addEventListener("click", function (event) { send("accept", {}, event.target); });
    $("do-start").addEventListener("click", function (event) { send("start", {}, event.target); });
    $("do-reject").addEventListener("click", function () {
      $("complete-form").hidden = true;
      $("reject-form").hidden = !$("reject-form").hidden;
      if (!$("reject-form").hidden) { $("reject-code").focus(); }
    });
    $("do-complete").addEventListener("click", function () {
      $("reject-form").hidden = true;
      $("complete-form").hidden = !$("complete-form").hidden;
      if (!$("complete-form").hidden) { $("complete-outcome").focus(); }
    });
    document.querySelectorAll(".subform .cancel").forEach(function (control) {
      control.addEventListener("click", function () { control.closest("form").hidden = true; });
    });
    $("reject-form").addEventListener("submit", onReject);
    $("complete-form").addEventListener("submit", onComplete);
    $("note-form").addEventListener("submit", onNote);
    applyLanguage();
    var c = claims();
    if (c && (!c.exp || c.exp * 1000 > Date.now())) { showApp(); } else { signOut(c ? "err.401" : null); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
