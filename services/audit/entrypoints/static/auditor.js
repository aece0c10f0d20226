/* Punte — the auditors' page. Plain JavaScript, no dependencies, no build step.
 * Romanian first, English available. The token lives in sessionStorage (this tab only)
 * and goes as a bearer token to the audit API; the purpose goes as X-Punte-Purpose with
 * every query, and the API records each query as an access event. Data from the API is
 * only ever put in the page with textContent, never as HTML. */
(function () {
  "use strict";

  var TEXT = {
    ro: {
      "title": "Jurnal de audit",
      "subtitle": "Audit trail",
      "logout": "Ieșire",
      "login.title": "Autentificare auditor",
      "login.username": "Utilizator",
      "login.password": "Parolă",
      "login.submit": "Intră",
      "login.busy": "Se verifică…",
      "login.hint": "Doar conturile cu rolul de auditor au acces. Fiecare căutare este înregistrată în jurnal, cu scopul declarat.",
      "purpose.label": "Scopul consultării",
      "purpose.placeholder": "ex. control tematic DGASPC, sesizarea nr. …",
      "purpose.hint": "Obligatoriu. Se trimite cu fiecare interogare și rămâne în jurnal (antetul X-Punte-Purpose).",
      "purpose.missing": "Completați scopul consultării înainte de a căuta.",
      "tab.search": "Căutare",
      "tab.timeline": "Cronologie caz",
      "tab.verify": "Verificare",
      "f.case": "Caz (case id)",
      "f.child": "Referință copil (child_ref)",
      "f.institution": "Instituție",
      "f.actor": "Actor",
      "f.type": "Tip eveniment",
      "f.since": "De la",
      "f.until": "Până la",
      "f.limit": "Pe pagină",
      "search.submit": "Caută",
      "search.reset": "Golește",
      "col.seq": "Nr.",
      "col.time": "Ora",
      "col.type": "Tip eveniment",
      "col.institution": "Instituție",
      "col.actor": "Actor",
      "col.case": "Caz",
      "pager.prev": "← Înapoi",
      "pager.next": "Înainte →",
      "pager.page": "Pagina {n}",
      "results.none": "Nicio intrare găsită.",
      "results.count": "{count} intrări (de la nr. {from} la {to}).",
      "results.case": "Deschide cronologia cazului {id}",
      "timeline.submit": "Arată cronologia",
      "timeline.none": "Nicio intrare pentru acest caz.",
      "timeline.count": "Cazul {id}: {count} evenimente, {inst} instituții.",
      "timeline.topic": "subiect",
      "verify.run": "Verifică jurnalul",
      "verify.issue": "Emite punct de control",
      "verify.issued": "Punct de control emis.",
      "verify.verified": "Verificat",
      "verify.entries": "Intrări",
      "verify.size": "Mărimea arborelui",
      "verify.checkpoint": "Ultimul punct de control",
      "verify.firstbad": "Prima intrare greșită",
      "verify.gaps": "Goluri",
      "verify.problems": "Probleme",
      "verify.latest": "Ultimul punct de control semnat",
      "verify.key": "Cheia de verificare a jurnalului",
      "verify.export": "Export pentru verificare offline",
      "verify.jsonl": "Descarcă JSONL",
      "verify.csv": "Descarcă CSV",
      "verify.howto": "Verificați fișierul JSONL pe un alt calculator, cu comanda:",
      "verify.nocheckpoint": "Încă nu există un punct de control semnat.",
      "verify.downloaded": "Descărcat: {file}",
      "yes": "DA",
      "no": "NU",
      "none": "—",
      "busy": "Se încarcă…",
      "footer": "Fiecare interogare este înregistrată (Legea 190/2018, GDPR art. 30).",
      "who": "Autentificat: {name}",
      "noauditor": "Atenție: contul nu are rolul de auditor; API-ul va refuza interogările.",
      "err.401": "Sesiunea a expirat sau tokenul nu este valid. Autentificați-vă din nou.",
      "err.403": "Acces refuzat: este necesar rolul de auditor.",
      "err.404": "Nu a fost găsit.",
      "err.422": "Date de căutare invalide.",
      "err.503": "Serviciul nu este disponibil momentan. Încercați din nou.",
      "err.network": "Serverul nu poate fi contactat.",
      "err.other": "Eroare ({status})."
    },
    en: {
      "title": "Audit trail",
      "subtitle": "Jurnal de audit",
      "logout": "Sign out",
      "login.title": "Auditor sign-in",
      "login.username": "Username",
      "login.password": "Password",
      "login.submit": "Sign in",
      "login.busy": "Checking…",
      "login.hint": "Only accounts with the auditor role have access. Every search is recorded in the trail, with its stated purpose.",
      "purpose.label": "Purpose of this consultation",
      "purpose.placeholder": "e.g. DGASPC thematic inspection, complaint no. …",
      "purpose.hint": "Required. Sent with every query and kept in the trail (X-Punte-Purpose header).",
      "purpose.missing": "Fill in the purpose before searching.",
      "tab.search": "Search",
      "tab.timeline": "Case timeline",
      "tab.verify": "Verification",
      "f.case": "Case id",
      "f.child": "Child reference (child_ref)",
      "f.institution": "Institution",
      "f.actor": "Actor",
      "f.type": "Event type",
      "f.since": "Since",
      "f.until": "Until",
      "f.limit": "Per page",
      "search.submit": "Search",
      "search.reset": "Clear",
      "col.seq": "Seq",
      "col.time": "Time",
      "col.type": "Event type",
      "col.institution": "Institution",
      "col.actor": "Actor",
      "col.case": "Case",
      "pager.prev": "← Previous",
      "pager.next": "Next →",
      "pager.page": "Page {n}",
      "results.none": "No entries found.",
      "results.count": "{count} entries (seq {from} to {to}).",
      "results.case": "Open the timeline of case {id}",
      "timeline.submit": "Show timeline",
      "timeline.none": "No entries for this case.",
      "timeline.count": "Case {id}: {count} events, {inst} institutions.",
      "timeline.topic": "topic",
      "verify.run": "Verify the trail",
      "verify.issue": "Issue a checkpoint",
      "verify.issued": "Checkpoint issued.",
      "verify.verified": "Verified",
      "verify.entries": "Entries",
      "verify.size": "Tree size",
      "verify.checkpoint": "Latest checkpoint",
      "verify.firstbad": "First bad entry",
      "verify.gaps": "Gaps",
      "verify.problems": "Problems",
      "verify.latest": "Latest signed checkpoint",
      "verify.key": "The log's verifier key",
      "verify.export": "Export for offline verification",
      "verify.jsonl": "Download JSONL",
      "verify.csv": "Download CSV",
      "verify.howto": "Check the JSONL file on another computer with:",
      "verify.nocheckpoint": "There is no signed checkpoint yet.",
      "verify.downloaded": "Downloaded: {file}",
      "yes": "YES",
      "no": "NO",
      "none": "—",
      "busy": "Loading…",
      "footer": "Every query is recorded (Law 190/2018, GDPR art. 30).",
      "who": "Signed in: {name}",
      "noauditor": "Warning: this account lacks the auditor role; the API will refuse its queries.",
      "err.401": "The session expired or the token is not valid. Please sign in again.",
      "err.403": "Access denied: the auditor role is required.",
      "err.404": "Not found.",
      "err.422": "Invalid search input.",
      "err.503": "The service is unavailable right now. Try again.",
      "err.network": "The server cannot be reached.",
      "err.other": "Error ({status})."
    }
  };

  var TOKEN_KEY = "punte.audit.token";
  var LANG_KEY = "punte.audit.lang";
  var BASE = new URL(".", document.baseURI); // the page is /ui, so the API is next to it
  var state = { lang: "ro", offset: 0, filters: null, lastKey: null, lastMessage: null };

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

  // ---- language ---------------------------------------------------------------------------

  function applyLanguage() {
    document.documentElement.lang = state.lang;
    document.querySelectorAll("[data-i18n]").forEach(function (el) {
      el.textContent = t(el.getAttribute("data-i18n"));
    });
    document.querySelectorAll("[data-i18n-placeholder]").forEach(function (el) {
      el.setAttribute("placeholder", t(el.getAttribute("data-i18n-placeholder")));
    });
    var subtitle = document.querySelector(".subtitle");
    if (subtitle) { subtitle.lang = state.lang === "ro" ? "en" : "ro"; }
    document.title = "Punte — " + t("title") + " / " + t("subtitle");
    var lang = $("lang");
    lang.setAttribute("aria-pressed", state.lang === "en" ? "true" : "false");
    lang.querySelectorAll("span").forEach(function (span) {
      span.classList.toggle("on", span.textContent.toLowerCase() === state.lang);
    });
    if (state.lastMessage) { showMessage.apply(null, state.lastMessage); }
    refreshWhoami();
    if (state.lastResults) { renderResults(state.lastResults); }
    if (state.lastTimeline) { renderTimeline(state.lastTimeline.id, state.lastTimeline.steps); }
    if (state.lastVerify) { renderVerify(state.lastVerify); }
  }

  function toggleLanguage() {
    state.lang = state.lang === "ro" ? "en" : "ro";
    try { localStorage.setItem(LANG_KEY, state.lang); } catch (e) { /* private mode */ }
    applyLanguage();
  }

  // ---- messages -----------------------------------------------------------------------------

  // A message is either a text key (with values) or the API's own {message_ro, message_en}.
  function showMessage(where, kind, key, values, detail) {
    state.lastMessage = [where, kind, key, values, detail];
    var el = $(where);
    var text = key ? t(key, values) : "";
    if (detail && (detail.message_ro || detail.message_en)) {
      var own = state.lang === "ro" ? (detail.message_ro || detail.message_en) : (detail.message_en || detail.message_ro);
      text = text ? text + " " + own : own;
    }
    el.textContent = text;
    el.className = "message " + kind;
    el.hidden = !text;
  }

  function clearMessage(where) {
    state.lastMessage = null;
    var el = $(where);
    el.hidden = true;
    el.textContent = "";
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
    var who = $("whoami");
    var c = claims();
    if (!c) { who.textContent = ""; return; }
    var name = (c.name || c.sub || "") + (c.institution ? " (" + c.institution + ")" : "");
    who.textContent = t("who", { name: name });
    if (!Array.isArray(c.roles) || c.roles.indexOf("auditor") < 0) {
      who.textContent += " — " + t("noauditor");
      who.classList.add("warn");
    } else {
      who.classList.remove("warn");
    }
  }

  function signedIn(value) {
    try { sessionStorage.setItem(TOKEN_KEY, value); } catch (e) { /* ignore */ }
    showApp();
  }

  function signOut(messageKey) {
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ }
    state.lastResults = state.lastTimeline = state.lastVerify = null;
    $("results").hidden = true;
    $("timeline").textContent = "";
    $("timeline-summary").textContent = "";
    $("verify-result").hidden = true;
    $("checkpoint-text").textContent = "";
    $("app-view").hidden = true;
    $("logout").hidden = true;
    $("login-view").hidden = false;
    $("password").value = "";
    if (messageKey) { showMessage("login-message", "error", messageKey); } else { clearMessage("login-message"); }
    $("username").focus();
  }

  function showApp() {
    $("login-view").hidden = true;
    $("app-view").hidden = false;
    $("logout").hidden = false;
    clearMessage("login-message");
    refreshWhoami();
    loadLogKey();
    $("purpose").focus();
  }

  // ---- API ------------------------------------------------------------------------------

  function purpose() { return $("purpose").value.trim(); }

  function requirePurpose() {
    if (purpose()) { return true; }
    showMessage("app-message", "error", "purpose.missing");
    $("purpose").focus();
    return false;
  }

  // fetch with the token and the purpose; resolves to the Response when ok, else shows the
  // error in the page (RO/EN) and rejects.
  function api(path, params, options) {
    var url = new URL(path, BASE);
    Object.keys(params || {}).forEach(function (name) {
      var value = params[name];
      if (value !== undefined && value !== null && value !== "") { url.searchParams.set(name, value); }
    });
    var headers = { "Accept": "application/json, text/plain, */*" };
    if (token()) { headers["Authorization"] = "Bearer " + token(); }
    if (purpose()) { headers["X-Punte-Purpose"] = purpose(); }
    clearMessage("app-message");
    return fetch(url, Object.assign({ method: "GET", headers: headers, credentials: "same-origin", cache: "no-store" }, options || {}))
      .catch(function () {
        showMessage("app-message", "error", "err.network");
        throw new Error("network");
      })
      .then(function (response) {
        if (response.ok) { return response; }
        return response.text().then(function (body) {
          var detail = null;
          try { detail = JSON.parse(body).detail; } catch (e) { /* not JSON */ }
          if (detail && typeof detail !== "object") { detail = null; }
          if (response.status === 401) {
            signOut("err.401");
          } else if (response.status === 403) {
            showMessage("app-message", "error", "err.403");
          } else if (response.status === 422 && Array.isArray(detail)) {
            showMessage("app-message", "error", "err.422");
          } else if (TEXT.ro["err." + response.status]) {
            showMessage("app-message", "error", "err." + response.status, null, detail);
          } else {
            showMessage("app-message", "error", "err.other", { status: response.status }, detail);
          }
          var error = new Error("http " + response.status);
          error.status = response.status;
          throw error;
        });
      });
  }

  function busy(button, on) {
    button.disabled = on;
    button.setAttribute("aria-busy", on ? "true" : "false");
  }

  function fmtTime(iso) {
    if (!iso) { return t("none"); }
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return iso; }
    return d.toLocaleString(state.lang === "ro" ? "ro-RO" : "en-GB", {
      year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit"
    });
  }

  function cell(row, label, text, className) {
    var td = document.createElement("td");
    td.setAttribute("data-label", label);
    if (className) { td.className = className; }
    if (text instanceof Node) { td.appendChild(text); } else { td.textContent = text == null || text === "" ? t("none") : String(text); }
    row.appendChild(td);
    return td;
  }

  // ---- sign in ----------------------------------------------------------------------------

  function onLogin(event) {
    event.preventDefault();
    var button = event.target.querySelector("button[type=submit]");
    busy(button, true);
    button.textContent = t("login.busy");
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
        if (detail && (detail.message_ro || detail.message_en)) {
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
      busy(button, false);
      button.textContent = t("login.submit");
    });
  }

  // ---- search ----------------------------------------------------------------------------

  function localToIso(value) {
    if (!value) { return ""; }
    var d = new Date(value); // datetime-local is the auditor's local time
    return isNaN(d.getTime()) ? "" : d.toISOString();
  }

  function readFilters() {
    var form = $("search-form");
    return {
      case_id: form.case_id.value.trim(), child_ref: form.child_ref.value.trim(),
      institution: form.institution.value.trim(), actor: form.actor.value.trim(),
      event_type: form.event_type.value.trim(),
      since: localToIso(form.since.value), until: localToIso(form.until.value),
      limit: form.limit.value
    };
  }

  function search(offset) {
    if (!state.filters || !requirePurpose()) { return; }
    var button = $("search-form").querySelector("button[type=submit]");
    busy(button, true);
    api("entries", Object.assign({}, state.filters, { offset: offset })).then(function (response) {
      return response.json();
    }).then(function (body) {
      state.offset = body.offset;
      state.lastResults = body;
      renderResults(body);
    }).catch(function () { /* shown already */ }).then(function () { busy(button, false); });
  }

  function renderResults(body) {
    var tbody = $("results-table").querySelector("tbody");
    tbody.textContent = "";
    body.entries.forEach(function (entry) {
      var row = document.createElement("tr");
      cell(row, t("col.seq"), entry.seq, "num");
      cell(row, t("col.time"), fmtTime(entry.recorded_at));
      cell(row, t("col.type"), entry.event_type || entry.topic, "mono-cell");
      cell(row, t("col.institution"), entry.institution);
      cell(row, t("col.actor"), entry.actor);
      if (entry.case_id) {
        var link = document.createElement("button");
        link.type = "button";
        link.className = "link";
        link.textContent = entry.case_id;
        link.title = t("results.case", { id: entry.case_id });
        link.addEventListener("click", function () { openTimeline(entry.case_id); });
        cell(row, t("col.case"), link);
      } else {
        cell(row, t("col.case"), null);
      }
      tbody.appendChild(row);
    });
    var n = body.entries.length;
    $("results-summary").textContent = n ? t("results.count", {
      count: n, from: body.entries[0].seq, to: body.entries[n - 1].seq
    }) : t("results.none");
    $("page-label").textContent = t("pager.page", { n: Math.floor(body.offset / body.limit) + 1 });
    $("prev").disabled = body.offset <= 0;
    $("next").disabled = n < body.limit;
    $("results").hidden = false;
  }

  // ---- timeline --------------------------------------------------------------------------

  function openTimeline(caseId) {
    $("t-case").value = caseId;
    selectTab("timeline");
    loadTimeline(caseId);
  }

  function loadTimeline(caseId) {
    if (!caseId || !requirePurpose()) { return; }
    var button = $("timeline-form").querySelector("button[type=submit]");
    busy(button, true);
    api("cases/" + encodeURIComponent(caseId) + "/timeline").then(function (response) {
      return response.json();
    }).then(function (steps) {
      state.lastTimeline = { id: caseId, steps: steps };
      renderTimeline(caseId, steps);
    }).catch(function () { /* shown already */ }).then(function () { busy(button, false); });
  }

  // A stable colour per institution, so one institution's steps read as one thread.
  function hue(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) { h = (h * 31 + name.charCodeAt(i)) % 360; }
    return h;
  }

  function renderTimeline(caseId, steps) {
    var list = $("timeline");
    list.textContent = "";
    var institutions = {};
    steps.forEach(function (step) {
      var who = step.institution || "punte";
      institutions[who] = true;
      var item = document.createElement("li");
      item.style.setProperty("--hue", hue(who));
      var time = document.createElement("time");
      time.dateTime = step.recorded_at;
      time.textContent = fmtTime(step.recorded_at);
      var inst = document.createElement("span");
      inst.className = "badge";
      inst.textContent = who;
      var type = document.createElement("p");
      type.className = "event";
      type.textContent = step.event_type || step.topic;
      var meta = document.createElement("p");
      meta.className = "meta";
      meta.textContent = "#" + step.seq + " · " + (step.actor || t("none")) + " · " + t("timeline.topic") + ": " + step.topic;
      item.append(time, inst, type, meta);
      list.appendChild(item);
    });
    $("timeline-summary").textContent = steps.length ? t("timeline.count", {
      id: caseId, count: steps.length, inst: Object.keys(institutions).length
    }) : t("timeline.none");
  }

  // ---- verification -----------------------------------------------------------------------

  function loadLogKey() {
    api("log-key").then(function (r) { return r.json(); }).then(function (body) {
      state.lastKey = body.verifier_key;
      $("log-key").textContent = body.verifier_key;
      $("verify-command").textContent = "punte audit verify punte-audit.jsonl --key '" + body.verifier_key + "'";
    }).catch(function () { /* shown already */ });
  }

  function loadCheckpoint() {
    return api("checkpoints/latest").then(function (r) { return r.text(); }).then(function (text) {
      $("checkpoint-text").textContent = text;
    }, function (error) {
      if (error && error.status === 404) {
        clearMessage("app-message");
        $("checkpoint-text").textContent = t("verify.nocheckpoint");
      }
    });
  }

  function runVerify() {
    var button = $("verify-run");
    busy(button, true);
    api("verify").then(function (r) { return r.json(); }).then(function (body) {
      state.lastVerify = body;
      renderVerify(body);
      return loadCheckpoint();
    }).catch(function () { /* shown already */ }).then(function () { busy(button, false); });
    if (!state.lastKey) { loadLogKey(); }
  }

  function renderVerify(body) {
    var verified = $("v-verified");
    verified.textContent = body.verified ? t("yes") : t("no");
    verified.className = body.verified ? "ok" : "bad";
    $("v-entries").textContent = body.entries;
    $("v-size").textContent = body.tree_size;
    $("v-checkpoint").textContent = body.checkpoint_size == null ? t("none") : body.checkpoint_size;
    $("v-firstbad").textContent = body.first_bad == null ? t("none") : body.first_bad;
    var gaps = body.gaps || [];
    $("v-gaps").textContent = gaps.length ? gaps.map(function (g) {
      return Object.keys(g).map(function (k) { return k + "=" + g[k]; }).join(" ");
    }).join("; ") : t("none");
    $("v-problems").textContent = (body.problems || []).length ? body.problems.join("; ") : t("none");
    $("verify-result").hidden = false;
  }

  function issueCheckpoint() {
    var button = $("checkpoint-issue");
    busy(button, true);
    api("checkpoints", null, { method: "POST" }).then(function (r) { return r.text(); }).then(function (text) {
      $("checkpoint-text").textContent = text;
      showMessage("app-message", "ok", "verify.issued");
    }).catch(function () { /* shown already */ }).then(function () { busy(button, false); });
  }

  function download(format) {
    if (!requirePurpose()) { return; }
    var button = $("export-" + format);
    var file = "punte-audit." + format;
    busy(button, true);
    api("export", { format: format }).then(function (r) { return r.blob(); }).then(function (blob) {
      var url = URL.createObjectURL(blob);
      var a = document.createElement("a");
      a.href = url;
      a.download = file;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
      showMessage("app-message", "ok", "verify.downloaded", { file: file });
    }, function (error) {
      if (error && error.status === 404) { showMessage("app-message", "error", "verify.nocheckpoint"); }
    }).then(function () { busy(button, false); });
  }

  // ---- tabs -------------------------------------------------------------------------------

  function selectTab(name) {
    ["search", "timeline", "verify"].forEach(function (tab) {
      var on = tab === name;
      $("tab-" + tab).setAttribute("aria-selected", on ? "true" : "false");
      $("tab-" + tab).tabIndex = on ? 0 : -1;
      $("panel-" + tab).hidden = !on;
    });
    if (name === "verify" && !$("checkpoint-text").textContent) { loadCheckpoint(); }
  }

  // ---- start -----------------------------------------------------------------------------

  function start() {
    try { state.lang = localStorage.getItem(LANG_KEY) === "en" ? "en" : "ro"; } catch (e) { state.lang = "ro"; }
    $("lang").addEventListener("click", toggleLanguage);
    $("logout").addEventListener("click", function () { signOut(null); });
    $("login-form").addEventListener("submit", onLogin);
    $("search-form").addEventListener("submit", function (event) {
      event.preventDefault();
      state.filters = readFilters();
      search(0);
    });
    $("search-form").addEventListener("reset", function () {
      state.filters = null;
      state.lastResults = null;
      $("results").hidden = true;
    });
    $("prev").addEventListener("click", function () {
      search(Math.max(0, state.offset - Number(state.filters.limit)));
    });
    $("next").addEventListener("click", function () { search(state.offset + Number(state.filters.limit)); });
    $("timeline-form").addEventListener("submit", function (event) {
      event.preventDefault();
      loadTimeline($("t-case").value.trim());
    });
    $("verify-run").addEventListener("click", runVerify);
    $("checkpoint-issue").addEventListener("click", issueCheckpoint);
    $("export-jsonl").addEventListener("click", function () { download("jsonl"); });
    $("export-csv").addEventListener("click", function () { download("csv"); });
    ["search", "timeline", "verify"].forEach(function (tab) {
      $("tab-" + tab).addEventListener("click", function () { selectTab(tab); });
    });
    $("tab-search").parentNode.addEventListener("keydown", function (event) {
      if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") { return; }
      var tabs = ["search", "timeline", "verify"];
      var now = tabs.findIndex(function (tab) { return $("tab-" + tab).getAttribute("aria-selected") === "true"; });
      var next = tabs[(now + (event.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
      selectTab(next);
      $("tab-" + next).focus();
    });
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
