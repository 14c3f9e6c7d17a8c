/*
 * app.js — progressive enhancement of figment's pages: follow links and submit
 * forms inside the current app with fetch(), then swap only the page body.
 *
 * Why: a generated page takes seconds. With a plain navigation the browser shows the
 * old page, frozen, until the new one has arrived; here the user sees at once that
 * something is happening (body.fig-loading, aria-busy on <main>, the form's buttons
 * disabled), and the shell (header, footer) stays in place.
 *
 * Design choices:
 *  - Everything works without this file: links and forms are plain HTML. The script
 *    only takes over what it fully understands, and leaves the rest to the browser:
 *    links outside /<app>/, other origins, modified clicks (ctrl, meta, shift, alt,
 *    middle button), target or download attributes, text/plain forms, files in
 *    non-multipart forms. When a fetched GET answer is not HTML, is not a page of
 *    this app, or fails, the browser loads the URL itself. A POST is never sent
 *    twice: it is resubmitted natively only when no answer came back at all (network
 *    error, a CSP without connect-src 'self') or a non-HTML refusal; an HTML answer
 *    in another layout is shown whole.
 *  - The shell is layout.c's: <header class="topbar">, <main id="page">, <footer>.
 *    A swap replaces the children of <main> and document.title, nothing else. A
 *    streamed page (its <main> starts with layout.c's .skeleton) has only the app's
 *    title in <title>, so the title is made from its first heading, as layout.c
 *    does for a whole page.
 *  - History: GET navigations push the final URL (response.url, after redirects).
 *    A POST whose answer is not a redirect pushes nothing: its URL cannot be
 *    fetched again with GET (reloading keeps the page that holds the form). Back
 *    and forward re-fetch the page (figment pages are never cached) and restore the
 *    scroll position saved in history.state.
 *  - Accessibility: after a swap, focus moves to the new page's [autofocus] control
 *    or its first heading (or <main>), so screen readers announce the new page.
 *  - CSP: figment serves script-src 'self' and no inline styles, so no eval, no
 *    inline handlers, no style attributes: presentation is classes in app.css.
 *  - One navigation at a time: a new one aborts the one in flight.
 */
(function () {
  'use strict';

  if (!window.fetch || !window.DOMParser || !window.FormData || !window.URL || !window.URLSearchParams ||
      !window.history || !window.history.pushState || !window.AbortController || !document.querySelector) {
    return;
  }

  var main = document.querySelector('main#page');
  var scope = appScope(location.pathname);
  if (!main || !scope) return;

  var LOADING = 'fig-loading';
  var enabled = true;       /* off for good after a CSP refusal of fetch */
  var current = null;       /* {controller, restore} of the navigation in flight */
  var bypassForm = null;    /* a form handed back to the browser's own submission */
  var shownUrl = stripHash(location.href);

  /* /<app>/ for a path inside an app, else null (the gallery, figment's own pages). */
  function appScope(path) {
    var m = /^\/([a-z0-9][a-z0-9_-]{0,31})(\/|$)/.exec(path);
    if (!m || m[1] === 'static') return null;
    return '/' + m[1] + '/';
  }

  function stripHash(u) {
    var i = u.indexOf('#');
    return i < 0 ? u : u.slice(0, i);
  }

  function inScope(url) {
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.origin === location.origin &&
           url.pathname.indexOf(scope) === 0;
  }

  function saveScroll() {
    var st = history.state && typeof history.state === 'object' ? history.state : {};
    var copy = {};
    for (var k in st) if (Object.prototype.hasOwnProperty.call(st, k)) copy[k] = st[k];
    copy.figment = 1;
    copy.scrollX = window.scrollX;
    copy.scrollY = window.scrollY;
    try { history.replaceState(copy, ''); } catch (e) { /* state too large: not worth failing for */ }
  }

  if ('scrollRestoration' in history) history.scrollRestoration = 'manual';
  saveScroll();
  /* deferred: this runs once the whole (streamed) document is in */
  document.title = pageTitle(main, document);

  /* A fetch refused by the page's CSP shows up here (and the fetch rejects): stop
   * enhancing, so later clicks do not each log a violation first. */
  document.addEventListener('securitypolicyviolation', function (e) {
    if (e.violatedDirective && /^(connect-src|default-src)/.test(e.violatedDirective)) enabled = false;
  });

  function startLoading(form, trigger) {
    var disabled = [];
    document.body.classList.add(LOADING);
    main.setAttribute('aria-busy', 'true');
    if (trigger) trigger.classList.add('fig-pending');
    if (form) {
      var controls = form.querySelectorAll('button, input[type=submit], input[type=image], input[type=button], input[type=reset]');
      for (var i = 0; i < controls.length; i++) {
        if (!controls[i].disabled) {
          controls[i].disabled = true;
          disabled.push(controls[i]);
        }
      }
      /* buttons outside the form that name it with form="..." */
      if (form.id) {
        var outside = document.querySelectorAll('button[form], input[form]');
        for (var j = 0; j < outside.length; j++) {
          if (outside[j].form === form && !outside[j].disabled && disabled.indexOf(outside[j]) < 0) {
            outside[j].disabled = true;
            disabled.push(outside[j]);
          }
        }
      }
    }
    return function restore() {
      for (var i = 0; i < disabled.length; i++) disabled[i].disabled = false;
      if (trigger) trigger.classList.remove('fig-pending');
      document.body.classList.remove(LOADING);
      main.removeAttribute('aria-busy');
    };
  }

  function isHtml(res) {
    var ct = (res.headers.get('content-type') || '').toLowerCase();
    return ct.indexOf('text/html') === 0;
  }

  /* The brand link names the app a page belongs to; a page of another app, or one
   * without figment's shell, is not ours to swap in. */
  function sameShell(doc) {
    var newMain = doc.querySelector('main#page');
    if (!newMain) return null;
    var a = document.querySelector('header.topbar a.brand');
    var b = doc.querySelector('header.topbar a.brand');
    if (!a || !b || a.getAttribute('href') !== b.getAttribute('href')) return null;
    return newMain;
  }

  function focusPage(hash) {
    var target = null;
    if (hash && hash.length > 1) {
      try { target = document.getElementById(decodeURIComponent(hash.slice(1))); } catch (e) { target = null; }
      if (target) {
        target.scrollIntoView();
        return;
      }
    }
    target = main.querySelector('[autofocus]');
    if (!target) {
      target = main.querySelector('h1, h2, h3') || main;
      if (!target.hasAttribute('tabindex')) target.setAttribute('tabindex', '-1');
    }
    try { target.focus({ preventScroll: true }); } catch (e) { target.focus(); }
  }

  /* A streamed page's <title> went out before the model wrote its heading, so it is
   * only the app's title; name the page as layout.c does for a whole one:
   * "<first heading> — <app title>". */
  function pageTitle(newMain, doc) {
    var title = doc.title;
    if (newMain.querySelector('.skeleton') === null) return title;
    var h = newMain.querySelector('h1, h2, h3, h4, h5, h6');
    var heading = h ? h.textContent.replace(/\s+/g, ' ').trim() : '';
    if (heading === '' || heading === title || title.indexOf(heading + ' \u2014 ') === 0) return title;
    return title ? heading + ' \u2014 ' + title : heading;
  }

  function swap(newMain, doc) {
    var title = pageTitle(newMain, doc);
    var frag = document.createDocumentFragment();
    while (newMain.firstChild) frag.appendChild(document.adoptNode(newMain.firstChild));
    if (main.replaceChildren) {
      main.replaceChildren(frag);
    } else {
      main.textContent = '';
      main.appendChild(frag);
    }
    document.title = title;
  }

  /* A POST answer in another layout (not our shell): show it whole rather than post
   * twice, and let the browser handle everything after it. */
  function replaceBody(doc) {
    var frag = document.createDocumentFragment();
    while (doc.body && doc.body.firstChild) frag.appendChild(document.adoptNode(doc.body.firstChild));
    while (document.body.firstChild) document.body.removeChild(document.body.firstChild);
    document.body.appendChild(frag);
    document.title = doc.title;
    enabled = false;
    window.scrollTo(0, 0);
  }

  /* Nothing came back (network error, fetch refused by the CSP): do what the browser
   * would have done without us. A form is submitted again natively, which is safe
   * because the first attempt produced no answer. */
  function fallback(nav) {
    if (nav.form && nav.method === 'post') {
      bypassForm = nav.form;
      try {
        if (nav.submitter && nav.form.requestSubmit) nav.form.requestSubmit(nav.submitter);
        else if (nav.form.requestSubmit) nav.form.requestSubmit();
        else HTMLFormElement.prototype.submit.call(nav.form);
      } finally {
        bypassForm = null;
      }
    } else if (nav.pop) {
      location.reload();
    } else {
      location.assign(nav.url);
    }
  }

  /* Load a URL the browser's way (a GET: harmless to repeat). */
  function loadNatively(url, pop) {
    if (pop && stripHash(url) === stripHash(location.href)) location.reload();
    else location.assign(url);
  }

  /*
   * nav: {url, method: 'get'|'post', body (POST only), form, submitter, trigger,
   *       pop (back/forward: no push), scroll ({x,y} to restore)}
   */
  function navigate(nav) {
    if (current) {
      current.controller.abort();
      current.restore();
    }
    var controller = new AbortController();
    var restore = startLoading(nav.form, nav.trigger);
    var mine = { controller: controller, restore: restore };
    current = mine;
    if (!nav.pop) saveScroll();

    var init = {
      method: nav.method === 'post' ? 'POST' : 'GET',
      credentials: 'same-origin',
      redirect: 'follow',
      signal: controller.signal,
      headers: { 'Accept': 'text/html' }
    };
    if (nav.method === 'post') init.body = nav.body;

    var got = null; /* {finalUrl, getResult, ...} once an answer has arrived */
    fetch(nav.url, init).then(function (res) {
      var finalUrl = res.url || nav.url;
      got = {
        finalUrl: finalUrl,
        /* what is shown is the answer to a GET: it may be fetched again and pushed */
        getResult: nav.method === 'get' || res.redirected,
        html: isHtml(res),
        inApp: inScope(new URL(finalUrl))
      };
      if (!got.html || !got.inApp) return null;
      return res.text();
    }).then(function (text) {
      if (current !== mine) return;
      current = null;
      restore();
      if (text === null) {
        /* not HTML, or a redirect out of the app */
        if (got.getResult) loadNatively(got.finalUrl, nav.pop);
        else fallback(nav); /* a non-HTML refusal of a POST (413, ...): nothing was done */
        return;
      }
      var doc = new DOMParser().parseFromString(text, 'text/html');
      var newMain = sameShell(doc);
      if (!newMain) {
        if (got.getResult) loadNatively(got.finalUrl, nav.pop);
        else replaceBody(doc);
        return;
      }
      swap(newMain, doc);
      var hash = new URL(nav.url).hash;
      if (!nav.pop && got.getResult) {
        var pushUrl = got.finalUrl.indexOf('#') < 0 ? got.finalUrl + hash : got.finalUrl;
        if (stripHash(pushUrl) !== stripHash(location.href) || hash) {
          history.pushState({ figment: 1, scrollX: 0, scrollY: 0 }, '', pushUrl);
        } else {
          history.replaceState({ figment: 1, scrollX: 0, scrollY: 0 }, '', pushUrl);
        }
      }
      shownUrl = stripHash(location.href);
      if (nav.scroll) window.scrollTo(nav.scroll.x, nav.scroll.y);
      else window.scrollTo(0, 0);
      focusPage(nav.pop ? '' : hash);
      document.dispatchEvent(new CustomEvent('figment:navigated', { detail: { url: location.href } }));
    }).catch(function (err) {
      if (err && err.name === 'AbortError') return; /* a newer navigation took over */
      if (current === mine) {
        current = null;
        restore();
      } else if (current !== null) {
        return;
      }
      if (got === null) {
        fallback(nav); /* no answer at all */
      } else if (got.getResult) {
        loadNatively(got.finalUrl, nav.pop);
      } else {
        /* the POST was answered but its page could not be read or shown: never post
         * twice; show the page that held the form again */
        location.assign(location.href);
      }
    });
  }

  document.addEventListener('click', function (e) {
    if (!enabled || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    var a = e.target && e.target.closest ? e.target.closest('a[href]') : null;
    if (!a || a.hasAttribute('download')) return;
    var target = a.getAttribute('target');
    if (target && target !== '_self') return;
    if (/(^|\s)external(\s|$)/i.test(a.getAttribute('rel') || '')) return;
    var url;
    try { url = new URL(a.href, location.href); } catch (err) { return; }
    if (!inScope(url)) return;
    /* a jump within this page: the browser scrolls, nothing to fetch */
    if (url.hash && stripHash(url.href) === shownUrl) return;
    e.preventDefault();
    navigate({ url: url.href, method: 'get', trigger: a });
  });

  document.addEventListener('submit', function (e) {
    var form = e.target;
    if (!enabled || e.defaultPrevented || !(form instanceof HTMLFormElement) || form === bypassForm) return;
    var submitter = e.submitter || null;
    var attr = function (name, subName) {
      if (submitter && submitter.hasAttribute(subName)) return submitter.getAttribute(subName);
      return form.getAttribute(name);
    };
    var method = (attr('method', 'formmethod') || 'get').toLowerCase();
    if (method !== 'get' && method !== 'post') return; /* dialog */
    var target = attr('target', 'formtarget');
    if (target && target !== '_self') return;
    var enctype = (attr('enctype', 'formenctype') || 'application/x-www-form-urlencoded').toLowerCase();
    var multipart = enctype === 'multipart/form-data';
    if (!multipart && enctype !== 'application/x-www-form-urlencoded') return; /* text/plain */
    var url;
    try { url = new URL(attr('action', 'formaction') || location.href, location.href); } catch (err) { return; }
    if (!inScope(url)) return;

    var data;
    try {
      data = new FormData(form, submitter);
    } catch (err) {
      /* browsers without the submitter argument */
      data = new FormData(form);
      if (submitter && submitter.name) data.append(submitter.name, submitter.value);
    }
    var hasFile = false;
    data.forEach(function (v) { if (typeof v !== 'string') hasFile = true; });
    /* a file in a GET or urlencoded form is sent as its name: leave that to the browser */
    if (hasFile && !(method === 'post' && multipart)) return;

    var nav = { method: method, form: form, submitter: submitter, trigger: submitter };
    if (method === 'get') {
      url.search = new URLSearchParams(data).toString();
      nav.url = url.href;
    } else {
      nav.url = url.href;
      nav.body = multipart ? data : new URLSearchParams(data);
    }
    e.preventDefault();
    navigate(nav);
  });

  window.addEventListener('popstate', function (e) {
    if (!enabled) {
      location.reload();
      return;
    }
    var url = location.href;
    /* only the fragment changed: the browser has already scrolled */
    if (stripHash(url) === shownUrl) return;
    if (!inScope(new URL(url))) {
      location.reload();
      return;
    }
    var st = e.state && typeof e.state === 'object' ? e.state : null;
    var scroll = st && typeof st.scrollY === 'number' ? { x: st.scrollX || 0, y: st.scrollY } : null;
    navigate({ url: url, method: 'get', pop: true, scroll: scroll });
  });
})();
