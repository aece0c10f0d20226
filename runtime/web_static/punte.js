/* Punte — what the people's pages share (the auditors' page, the case managers' inbox):
 * texts in two languages (Romanian first) and the RO | EN toggle, messages, the sign-in and
 * the token, calls to the page's API, tabs. Plain JavaScript, no dependencies, no build
 * step; runtime/web_pages.py serves it next to each page as ui/static/punte.js, loaded
 * (deferred) before the page's own script, which starts it with Punte.page({...}).
 *
 * The token lives in sessionStorage (this tab only) and goes as a bearer token to the
 * page's API, which checks the roles. Data from the APIs only ever goes into the page with
 * textContent, never as HTML. */
(function () {
  "use strict";

  // The texts every page uses; a page's own texts (config.text) come on top.
  var SHARED = {
    ro: {
      "logout": "Ieșire",
      "login.username": "Utilizator",
      "login.password": "Parolă",
      "login.submit": "Intră",
      "login.busy": "Se verifică…",
      "who": "Autentificat: {name}",
      "none": "—",
      "err.401": "Sesiunea a expirat sau tokenul nu este valid. Autentificați-vă din nou.",
      "err.403": "Acces refuzat.",
      "err.404": "Nu a fost găsit.",
      "err.422": "Date invalide.",
      "err.503": "Serviciul nu este disponibil momentan. Încercați din nou.",
      "err.network": "Serverul nu poate fi contactat.",
      "err.other": "Eroare ({status})."
    },
    en: {
      "logout": "Sign out",
      "login.username": "Username",
      "login.password": "Password",
      "login.submit": "Sign in",
      "login.busy": "Checking…",
      "who": "Signed in: {name}",
      "none": "—",
      "err.401": "The session expired or the token is not valid. Please sign in again.",
      "err.403": "Access denied.",
      "err.404": "Not found.",
      "err.422": "Invalid input.",
      "err.503": "The service is unavailable right now. Try again.",
      "err.network": "The server cannot be reached.",
      "err.other": "Error ({status})."
    }
  };

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function busy(node, on) {
    node.disabled = on;
    node.setAttribute("aria-busy", on ? "true" : "false");
  }

  // The text of a refusal in the reader's language: {message_ro, message_en}, or one
  // "Romanian / English" message.
  function detailText(detail, lang) {
    if (!detail || typeof detail !== "object" || Array.isArray(detail)) { return ""; }
    if (detail.message_ro || detail.message_en) {
      return lang === "ro" ? (detail.message_ro || detail.message_en) : (detail.message_en || detail.message_ro);
    }
    if (typeof detail.message === "string") {
      var parts = detail.message.split(" / ");
      return parts.length === 2 ? parts[lang === "ro" ? 0 : 1] : detail.message;
    }
    return "";
  }

  /* One page. config:
   *   name       "audit" | "inbox": the keys of the token and the language in the browser
   *   text       {ro: {...}, en: {...}}: the page's texts, over the shared ones
   *   seconds    true to show times to the second
   *   headers()  more headers for every API call (the auditors' purpose)
   *   who(c)     the name shown for the token's claims (default: name or sub, institution)
   *   warning(c) a text key to show next to it, or null
   *   titlePrefix()  what goes before the window title (the inbox's unread count)
   *   signedIn()     after sign-in, or on opening the page with a valid token
   *   signedOut()    before the sign-in form comes back: forget what the page showed
   *   languageChanged()  re-render what the page drew itself */
  function page(config) {
    var TEXT = { ro: Object.assign({}, SHARED.ro, config.text.ro), en: Object.assign({}, SHARED.en, config.text.en) };
    var TOKEN_KEY = "punte." + config.name + ".token";
    var LANG_KEY = "punte." + config.name + ".lang";
    var BASE = new URL(".", document.baseURI); // the page is /ui, so its APIs are next to it
    var state = { lang: "ro", messages: {}, expiry: null };

    function t(key, values) {
      var text = TEXT[state.lang][key] || TEXT.ro[key] || key;
      if (values) {
        Object.keys(values).forEach(function (name) {
          text = text.split("{" + name + "}").join(String(values[name]));
        });
      }
      return text;
    }

    function url(path) { return new URL(path, BASE); }

    function fmtTime(iso) {
      if (!iso) { return t("none"); }
      var d = new Date(iso);
      if (isNaN(d.getTime())) { return iso; }
      var parts = { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" };
      if (config.seconds) { parts.second = "2-digit"; }
      return d.toLocaleString(state.lang === "ro" ? "ro-RO" : "en-GB", parts);
    }

    // ---- language ---------------------------------------------------------------------

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
      Object.keys(state.messages).forEach(function (where) {
        showMessage.apply(null, [where].concat(state.messages[where]));
      });
      refreshWhoami();
      refreshTitle();
      if (config.languageChanged) { config.languageChanged(); }
    }

    function toggleLanguage() {
      state.lang = state.lang === "ro" ? "en" : "ro";
      try { localStorage.setItem(LANG_KEY, state.lang); } catch (e) { /* private mode */ }
      applyLanguage();
    }

    function refreshTitle() {
      document.title = (config.titlePrefix ? config.titlePrefix() : "") + "Punte — " + t("title") + " / " + t("subtitle");
    }

    // ---- messages ---------------------------------------------------------------------

    // A message in the element `where`: the API's own refusal (detail) when it has a text,
    // else a text key with its values. Kept, to be shown again in the other language.
    function showMessage(where, kind, key, values, detail) {
      state.messages[where] = [kind, key, values, detail];
      var node = $(where);
      var text = detailText(detail, state.lang) || (key ? t(key, values) : "");
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

    // A refusal: the service's own words in both languages if it gave them, else the page's
    // text for the status, else the service's one-line message, else the status.
    function showRefusal(where, status, body) {
      var detail = body && typeof body.detail === "object" && !Array.isArray(body.detail) ? body.detail : null;
      if (detail && (detail.message_ro || detail.message_en)) {
        showMessage(where, "error", null, null, detail);
      } else if (TEXT.ro["err." + status]) {
        showMessage(where, "error", "err." + status);
      } else {
        showMessage(where, "error", "err.other", { status: status }, detail);
      }
    }

    // ---- token ------------------------------------------------------------------------

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
      var node = $("whoami");
      var c = claims();
      var warning = c && config.warning ? config.warning(c) : null;
      var name = !c ? "" : config.who ? config.who(c)
        : (c.name || c.sub || "") + (c.institution ? " (" + c.institution + ")" : "");
      node.textContent = c ? t("who", { name: name }) + (warning ? " — " + t(warning) : "") : "";
      node.classList.toggle("warn", !!warning);
    }

    function showApp() {
      // At the token's expiry the page signs out by itself (a live stream outlives the
      // token's checks).
      var c = claims();
      if (state.expiry) { clearTimeout(state.expiry); }
      state.expiry = c && c.exp ? setTimeout(function () { signOut("err.401"); }, Math.max(0, c.exp * 1000 - Date.now())) : null;
      $("login-view").hidden = true;
      $("app-view").hidden = false;
      $("logout").hidden = false;
      clearMessage("login-message");
      refreshWhoami();
      config.signedIn();
    }

    function signOut(messageKey) {
      try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ }
      if (state.expiry) { clearTimeout(state.expiry); }
      state.expiry = null;
      config.signedOut();
      Object.keys(state.messages).forEach(clearMessage);
      $("app-view").hidden = true;
      $("logout").hidden = true;
      $("login-view").hidden = false;
      $("password").value = "";
      if (messageKey) { showMessage("login-message", "error", messageKey); }
      refreshWhoami();
      refreshTitle();
      $("username").focus();
    }

    // POST /ui/login: the service exchanges the username and password at the identity
    // provider and hands back the token.
    function onLogin(event) {
      event.preventDefault();
      var submit = event.target.querySelector("button[type=submit]");
      busy(submit, true);
      submit.textContent = t("login.busy");
      clearMessage("login-message");
      fetch(url("ui/login"), {
        method: "POST", credentials: "same-origin", cache: "no-store",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify({ username: $("username").value.trim(), password: $("password").value })
      }).then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (body) {
          if (response.ok && body.access_token) {
            $("password").value = "";
            try { sessionStorage.setItem(TOKEN_KEY, body.access_token); } catch (e) { /* ignore */ }
            showApp();
          } else {
            showRefusal("login-message", response.status, body);
          }
        });
      }, function () {
        showMessage("login-message", "error", "err.network");
      }).then(function () {
        busy(submit, false);
        submit.textContent = t("login.submit");
      });
    }

    // ---- the API ----------------------------------------------------------------------

    function read(response, as) {
      if (as === "text") { return response.text(); }
      if (as === "blob") { return response.blob(); }
      return response.text().then(function (text) {
        try { return text ? JSON.parse(text) : null; } catch (e) { return null; }
      });
    }

    /* A call next to the page with the token and the page's headers. options: params (the
     * query; empty values left out), method, body (sent as JSON), read ("text" or "blob";
     * JSON by default), where (the message element, "app-message" by default), keepMessage.
     * Resolves to the body when ok; else shows the refusal in `where` in the reader's
     * language and rejects with an Error carrying the status. A 401 signs the page out. */
    function api(path, options) {
      options = options || {};
      var target = url(path);
      var params = options.params || {};
      Object.keys(params).forEach(function (name) {
        var value = params[name];
        if (value !== undefined && value !== null && value !== "") { target.searchParams.set(name, value); }
      });
      var headers = Object.assign({ "Accept": options.read ? "*/*" : "application/json" },
                                  config.headers ? config.headers() : {});
      if (token()) { headers["Authorization"] = "Bearer " + token(); }
      var init = { method: options.method || "GET", headers: headers, credentials: "same-origin", cache: "no-store" };
      if (options.body !== undefined) {
        headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(options.body);
      }
      var where = options.where || "app-message";
      if (!options.keepMessage) { clearMessage(where); }
      return fetch(target, init).catch(function () {
        showMessage(where, "error", "err.network");
        throw new Error("network");
      }).then(function (response) {
        if (response.ok) { return read(response, options.read); }
        return read(response).then(function (body) {
          if (response.status === 401) { signOut("err.401"); } else { showRefusal(where, response.status, body); }
          var error = new Error("http " + response.status);
          error.status = response.status;
          throw error;
        });
      });
    }

    // ---- tabs -------------------------------------------------------------------------

    // Buttons "tab-<name>" (role=tab) and their panels "panel-<name>": a click or an arrow
    // key selects one, then `selected(name)` runs. Returns the function that selects.
    function tabs(names, selected) {
      function select(name) {
        names.forEach(function (tab) {
          var on = tab === name;
          $("tab-" + tab).setAttribute("aria-selected", on ? "true" : "false");
          $("tab-" + tab).tabIndex = on ? 0 : -1;
          $("panel-" + tab).hidden = !on;
        });
        if (selected) { selected(name); }
      }
      names.forEach(function (tab) {
        $("tab-" + tab).addEventListener("click", function () { select(tab); });
      });
      $("tab-" + names[0]).parentNode.addEventListener("keydown", function (event) {
        if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") { return; }
        var now = names.findIndex(function (tab) { return $("tab-" + tab).getAttribute("aria-selected") === "true"; });
        var next = names[(now + (event.key === "ArrowRight" ? 1 : names.length - 1)) % names.length];
        select(next);
        $("tab-" + next).focus();
      });
      return select;
    }

    // ---- start ------------------------------------------------------------------------

    // After the page has wired its own controls: the language, the sign-in and sign-out,
    // then the page as a valid stored token allows (the scripts are deferred: the document
    // is parsed by now).
    function start() {
      try { state.lang = localStorage.getItem(LANG_KEY) === "en" ? "en" : "ro"; } catch (e) { state.lang = "ro"; }
      $("lang").addEventListener("click", toggleLanguage);
      $("logout").addEventListener("click", function () { signOut(null); });
      $("login-form").addEventListener("submit", onLogin);
      applyLanguage();
      var c = claims();
      if (c && (!c.exp || c.exp * 1000 > Date.now())) { showApp(); } else { signOut(c ? "err.401" : null); }
    }

    return {
      $: $, el: el, busy: busy, t: t, url: url, fmtTime: fmtTime,
      lang: function () { return state.lang; },
      showMessage: showMessage, clearMessage: clearMessage, refreshTitle: refreshTitle,
      refreshWhoami: refreshWhoami, token: token, claims: claims, signOut: signOut,
      api: api, tabs: tabs, start: start
    };
  }

  window.Punte = { page: page };
})();
