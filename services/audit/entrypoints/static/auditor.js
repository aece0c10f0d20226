/* Punte — the auditors' page: search the trail, follow a case across institutions, verify
 * the log and download an export. Plain JavaScript, no dependencies, no build step; the
 * sign-in, token, language, messages and API calls are the shared punte.js (loaded first).
 * The purpose goes as X-Punte-Purpose with every query: a code chosen from the list the
 * API gives (GET ui/api/reference, contracts/reference/access-purposes.yaml) and, if
 * written, the auditor's own words ("<code>; <percent-encoded text>"); the API records
 * each query as an access event with both. Data from the API is only ever put in the page
 * with textContent, never as HTML. */
(function () {
  "use strict";

  var TEXT = {
    ro: {
      "title": "Jurnal de audit",
      "subtitle": "Audit trail",
      "login.title": "Autentificare auditor",
      "login.hint": "Doar conturile cu rolul de auditor au acces. Fiecare căutare este înregistrată în jurnal, cu scopul declarat.",
      "purpose.label": "Scopul consultării",
      "purpose.choose": "— alegeți scopul —",
      "purpose.text": "Detalii (opțional)",
      "purpose.placeholder": "ex. control tematic DGASPC, sesizarea nr. …",
      "purpose.hint": "Obligatoriu. Scopul se trimite cu fiecare interogare și rămâne în jurnal (antetul X-Punte-Purpose), cu detaliile.",
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
      "col.value": "Valoare",
      "value.sealed": "sigilată",
      "value.erased": "ștearsă {at} (regula {rule})",
      "value.none": "fără valoare",
      "value.in-v1-leaf": "în intrarea v1 (nu se afișează)",
      "value.missing": "lipsește",
      "value.digest": "SHA-256 al valorii: {digest}",
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
      "verify.tar": "Descarcă arhiva (tar)",
      "verify.csv": "Descarcă CSV",
      "verify.howto": "Verificați fișierul JSONL pe un alt calculator, cu comanda:",
      "verify.nocheckpoint": "Încă nu există un punct de control semnat.",
      "verify.downloaded": "Descărcat: {file}",
      "yes": "DA",
      "no": "NU",
      "verify.lagging": "NU încă: {n} mesaje de pe broker încă neauditate",
      "footer": "Fiecare interogare este înregistrată (Legea 190/2018, GDPR art. 30).",
      "noauditor": "Atenție: contul nu are rolul de auditor; API-ul va refuza interogările.",
      "err.403": "Acces refuzat: este necesar rolul de auditor.",
      "err.422": "Date de căutare invalide."
    },
    en: {
      "title": "Audit trail",
      "subtitle": "Jurnal de audit",
      "login.title": "Auditor sign-in",
      "login.hint": "Only accounts with the auditor role have access. Every search is recorded in the trail, with its stated purpose.",
      "purpose.label": "Purpose of this consultation",
      "purpose.choose": "— choose the purpose —",
      "purpose.text": "Details (optional)",
      "purpose.placeholder": "e.g. DGASPC thematic inspection, complaint no. …",
      "purpose.hint": "Required. The purpose is sent with every query and kept in the trail (X-Punte-Purpose header), with the details.",
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
      "col.value": "Value",
      "value.sealed": "sealed",
      "value.erased": "erased {at} (rule {rule})",
      "value.none": "no value",
      "value.in-v1-leaf": "in the v1 entry (not shown)",
      "value.missing": "missing",
      "value.digest": "SHA-256 of the value: {digest}",
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
      "verify.tar": "Download the archive (tar)",
      "verify.csv": "Download CSV",
      "verify.howto": "Check the JSONL file on another computer with:",
      "verify.nocheckpoint": "There is no signed checkpoint yet.",
      "verify.downloaded": "Downloaded: {file}",
      "yes": "YES",
      "no": "NO",
      "verify.lagging": "NOT YET: {n} messages on the broker not yet audited",
      "footer": "Every query is recorded (Law 190/2018, GDPR art. 30).",
      "noauditor": "Warning: this account lacks the auditor role; the API will refuse its queries.",
      "err.403": "Access denied: the auditor role is required.",
      "err.422": "Invalid search input."
    }
  };


  var TABS = ["search", "timeline", "verify"];
  var state = {
    offset: 0, filters: null, lastKey: null, lastResults: null, lastTimeline: null, lastVerify: null, purposes: null
  };
  var punte = Punte.page({
    name: "audit", text: TEXT, seconds: true,
    // The code, then the details; headers are ASCII, so the details travel percent-encoded
    // (runtime/access.py decodes them).
    headers: function () {
      if (!purpose()) { return {}; }
      var details = purposeText();
      return { "X-Punte-Purpose": purpose() + (details ? "; " + encodeURIComponent(details) : "") };
    },
    warning: function (claims) {
      return Array.isArray(claims.roles) && claims.roles.indexOf("auditor") >= 0 ? null : "noauditor";
    },
    signedIn: function () {
      loadPurposes();
      loadLogKey();
      $("purpose").focus();
    },
    signedOut: function () {
      state.lastResults = state.lastTimeline = state.lastVerify = null;
      $("results").hidden = true;
      $("timeline").textContent = "";
      $("timeline-summary").textContent = "";
      $("verify-result").hidden = true;
      $("checkpoint-text").textContent = "";
    },
    languageChanged: function () {
      fillPurposes();
      if (state.lastResults) { renderResults(state.lastResults); }
      if (state.lastTimeline) { renderTimeline(state.lastTimeline.id, state.lastTimeline.steps); }
      if (state.lastVerify) { renderVerify(state.lastVerify); }
    }
  });
  var $ = punte.$, t = punte.t, api = punte.api, busy = punte.busy, fmtTime = punte.fmtTime;
  var showMessage = punte.showMessage;

  // ---- the purpose ---------------------------------------------------------------------

  function purpose() { return $("purpose").value; }

  function purposeText() { return $("purpose-text").value.trim(); }

  // The list of purposes, code -> {ro, en}, from the reference data; the choice is kept
  // when the language changes.
  function loadPurposes() {
    if (state.purposes) { return; }
    api("ui/api/reference", { keepMessage: true }).then(function (body) {
      state.purposes = body.purposes;
      fillPurposes();
    }).catch(function () { /* shown already */ });
  }

  function fillPurposes() {
    var select = $("purpose");
    var chosen = select.value;
    select.textContent = "";
    var none = punte.el("option", null, t("purpose.choose"));
    none.value = "";
    select.appendChild(none);
    Object.keys(state.purposes || {}).forEach(function (code) {
      var labels = state.purposes[code];
      var option = punte.el("option", null, labels[punte.lang()] || labels.ro || code);
      option.value = code;
      select.appendChild(option);
    });
    select.value = chosen;
  }

  function requirePurpose() {
    if (purpose()) { return true; }
    showMessage("app-message", "error", "purpose.missing");
    $("purpose").focus();
    return false;
  }

  function cell(row, label, text, className) {
    var td = punte.el("td", className);
    td.setAttribute("data-label", label);
    if (text instanceof Node) { td.appendChild(text); } else { td.textContent = text == null || text === "" ? t("none") : String(text); }
    row.appendChild(td);
    return td;
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
    api("entries", { params: Object.assign({}, state.filters, { offset: offset }) }).then(function (body) {
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
        var link = punte.el("button", "link", entry.case_id);
        link.type = "button";
        link.title = t("results.case", { id: entry.case_id });
        link.addEventListener("click", function () { openTimeline(entry.case_id); });
        cell(row, t("col.case"), link);
      } else {
        cell(row, t("col.case"), null);
      }
      // What became of the value (never the value itself): sealed, or erased when and by which rule.
      var value = entry.value || { state: "none" };
      var shown = cell(row, t("col.value"), t("value." + value.state, {
        at: value.erased_at ? fmtTime(value.erased_at) : "", rule: value.erased_rule || ""
      }));
      if (entry.record && entry.record.value_sha256) {
        shown.title = t("value.digest", { digest: entry.record.value_sha256 });
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
    api("cases/" + encodeURIComponent(caseId) + "/timeline").then(function (steps) {
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
      var time = punte.el("time", null, fmtTime(step.recorded_at));
      time.dateTime = step.recorded_at;
      item.append(time, punte.el("span", "badge", who), punte.el("p", "event", step.event_type || step.topic),
                  punte.el("p", "meta", "#" + step.seq + " · " + (step.actor || t("none")) + " · " +
                                        t("timeline.topic") + ": " + step.topic));
      list.appendChild(item);
    });
    $("timeline-summary").textContent = steps.length ? t("timeline.count", {
      id: caseId, count: steps.length, inst: Object.keys(institutions).length
    }) : t("timeline.none");
  }

  // ---- verification -----------------------------------------------------------------------

  function loadLogKey() {
    api("log-key").then(function (body) {
      state.lastKey = body.verifier_key;
      $("log-key").textContent = body.verifier_key;
      $("verify-command").textContent = "punte audit verify punte-audit.tar --key '" + body.verifier_key + "'";
    }).catch(function () { /* shown already */ });
  }

  function loadCheckpoint() {
    return api("checkpoints/latest", { read: "text" }).then(function (text) {
      $("checkpoint-text").textContent = text;
    }, function (error) {
      if (error.status === 404) {
        punte.clearMessage("app-message");
        $("checkpoint-text").textContent = t("verify.nocheckpoint");
      }
    });
  }

  function runVerify() {
    var button = $("verify-run");
    busy(button, true);
    api("verify").then(function (body) {
      state.lastVerify = body;
      renderVerify(body);
      return loadCheckpoint();
    }).catch(function () { /* shown already */ }).then(function () { busy(button, false); });
    if (!state.lastKey) { loadLogKey(); }
  }

  function renderVerify(body) {
    var verified = $("v-verified");
    // Lagging: the trail is intact but has not yet recorded every message on the broker.
    verified.textContent = body.verified ? t("yes")
      : body.state === "lagging" ? t("verify.lagging", { n: body.not_audited }) : t("no");
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
    api("checkpoints", { method: "POST", read: "text" }).then(function (text) {
      $("checkpoint-text").textContent = text;
      showMessage("app-message", "ok", "verify.issued");
    }).catch(function () { /* shown already */ }).then(function () { busy(button, false); });
  }

  function download(format) {
    if (!requirePurpose()) { return; }
    var button = $("export-" + format);
    var file = "punte-audit." + format;
    busy(button, true);
    api("export", { params: { format: format }, read: "blob" }).then(function (blob) {
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
      if (error.status === 404) { showMessage("app-message", "error", "verify.nocheckpoint"); }
    }).then(function () { busy(button, false); });
  }

  // ---- start -----------------------------------------------------------------------------

  var selectTab = punte.tabs(TABS, function (name) {
    if (name === "verify" && !$("checkpoint-text").textContent) { loadCheckpoint(); }
  });
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
  $("export-tar").addEventListener("click", function () { download("tar"); });
  $("export-csv").addEventListener("click", function () { download("csv"); });
  punte.start();
})();
