/*
 * mail_flow.js — drives Debian's Chromium (through playwright-core, no browser of its
 * own) through the mail app as a person would, against a running figment whose model
 * is fakellm with tests/browser/mail.fakellm.json. tests/integration/test_browser.py
 * starts both and runs this script; it can also be run by hand:
 *
 *   node tests/browser/mail_flow.js --base http://127.0.0.1:PORT --flow main|delete \
 *        --js on|off [--artifacts DIR] [--chromium /usr/bin/chromium] [--slow N]
 *
 * Flows:
 *   main    inbox -> open a message -> back -> forward -> mark unread (POST form)
 *           -> inbox shows it unread -> search (GET form, submitter name/value) -> back
 *           -> the gallery (a link outside the app: always a real navigation)
 *   delete  open a message -> Delete -> figment's own confirmation page -> Cancel
 *           -> the model's "not deleted" page -> inbox still lists it -> Delete
 *           -> Confirm -> the model's next page -> inbox no longer lists it
 *
 * Checked at every step: the page content, the URL, document.title; over the whole
 * run: no console error, no uncaught page error, no CSP violation (the
 * securitypolicyviolation event and Chromium's console report), no failed request,
 * no HTTP error status. With --js on, a marker put on the shell's <header> must
 * survive every step (app.js swapped <main> instead of loading a new document), and
 * focus must move to the new page's heading; with --js off the marker must be gone
 * after each step (plain links and forms did real navigations).
 *
 * A screenshot of every step goes to --artifacts (kept by the test as an artifact).
 * Exit status: 0 when every check passed, 1 with a message on the first failure,
 * 2 on bad arguments.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

/* playwright-core is pinned in tests/npm (package-lock.json); it never downloads a browser */
process.env.PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD = '1';
const { chromium } = createRequire(path.join(__dirname, '..', 'npm', 'package.json'))('playwright-core');

function parseArgs(argv) {
  const opts = { base: null, flow: null, js: null, artifacts: null, chromium: '/usr/bin/chromium', slow: 1 };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i];
    const val = argv[i + 1];
    if (val === undefined) usage(`${key}: missing value`);
    i++;
    if (key === '--base') {
      if (!/^http:\/\/127\.0\.0\.1:[0-9]{1,5}$/.test(val)) usage('--base: expected http://127.0.0.1:PORT');
      opts.base = val;
    } else if (key === '--flow') {
      if (val !== 'main' && val !== 'delete') usage('--flow: expected main or delete');
      opts.flow = val;
    } else if (key === '--js') {
      if (val !== 'on' && val !== 'off') usage('--js: expected on or off');
      opts.js = val === 'on';
    } else if (key === '--artifacts') {
      opts.artifacts = val;
    } else if (key === '--chromium') {
      opts.chromium = val;
    } else if (key === '--slow') {
      if (!/^[1-9][0-9]?$/.test(val)) usage('--slow: expected an integer from 1 to 99');
      opts.slow = Number(val);
    } else {
      usage(`unknown option ${key}`);
    }
  }
  if (!opts.base || !opts.flow || opts.js === null) usage('--base, --flow and --js are required');
  if (!opts.artifacts) opts.artifacts = path.join(__dirname, '..', '..', 'build', 'test-artifacts', 'browser');
  return opts;
}

function usage(msg) {
  process.stderr.write(`mail_flow.js: ${msg}\n`);
  process.exit(2);
}

class Failure extends Error {}

function check(cond, msg) {
  if (!cond) throw new Failure(msg);
}

const opts = parseArgs(process.argv.slice(2));
const WAIT_MS = 20000 * opts.slow;
const MODE = opts.js ? 'js' : 'nojs';

/* Everything the page does wrong, collected over the whole run. */
const problems = [];
const notes = new Set();
let appJsLoaded = false;
let fetches = 0;

function watch(page) {
  page.on('console', (msg) => {
    const text = msg.text();
    if (msg.type() === 'error' || msg.type() === 'warning' || /Content Security Policy/i.test(text)) {
      const loc = msg.location();
      const where = loc && loc.url ? loc.url : '';
      /* Chromium asks for /favicon.ico by itself; figment has none (yet). Counted apart
       * so that it is reported without failing the flow; any other 404 fails. */
      if (/^http:\/\/127\.0\.0\.1:[0-9]+\/favicon\.ico$/.test(where) && /status of 404/.test(text)) {
        notes.add('GET /favicon.ico is 404 (Chromium asks for it on every page)');
        return;
      }
      problems.push(`console ${msg.type()}: ${text}${where ? ` (${where})` : ''}`);
    }
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) => {
    const why = req.failure() ? req.failure().errorText : 'failed';
    /* a fetch that app.js aborted because a newer navigation took over is not a fault */
    if (why === 'net::ERR_ABORTED' && req.resourceType() === 'fetch') return;
    problems.push(`request failed: ${req.method()} ${req.url()}: ${why}`);
  });
  page.on('response', (res) => {
    const url = new URL(res.url());
    if (res.status() >= 400) problems.push(`HTTP ${res.status()}: ${res.request().method()} ${res.url()}`);
    if (url.pathname === '/static/app.js' && res.status() === 200) appJsLoaded = true;
  });
  page.on('request', (req) => {
    if (req.resourceType() === 'fetch') fetches++;
  });
}

let stepNo = 0;
let stepName = 'start';
const timings = [];

async function step(page, name, fn) {
  stepNo++;
  stepName = name;
  const t0 = Date.now();
  await fn();
  const ms = Date.now() - t0;
  timings.push(`${name} ${ms} ms`);
  const file = path.join(opts.artifacts, `${opts.flow}-${MODE}-${String(stepNo).padStart(2, '0')}-${name}.png`);
  const t1 = Date.now();
  await page.screenshot({ path: file, fullPage: true });
  process.stdout.write(`step ${stepNo} ${name}: ok (${ms} ms, screenshot ${Date.now() - t1} ms)\n`);
}

/* ---- what a page must show ---- */

function here(page) {
  const u = new URL(page.url());
  return u.pathname + u.search;
}

async function waitHeading(page, text) {
  const h1 = page.locator('main#page h1').filter({ hasText: text });
  try {
    await h1.first().waitFor({ state: 'visible', timeout: WAIT_MS });
  } catch (e) {
    const now = await page.locator('main#page').innerText().catch(() => '(no main)');
    throw new Failure(`expected the page "${text}", got at ${page.url()}:\n${now.slice(0, 1500)}`);
  }
  /* with app.js the loading state must be over once the new page is in */
  if (opts.js) await page.locator('body:not(.fig-loading)').waitFor({ timeout: WAIT_MS });
}

/* "<heading> — Mail". Without JavaScript a streamed page can only have the app's
 * title: its <head> went out before the model wrote the heading. With app.js the
 * swapped page always gets the full title. */
async function checkTitle(page, title) {
  const t = await page.title();
  const streamed = await page.locator('main#page > .skeleton').count() > 0;
  const ok = t === title || (!opts.js && streamed && t === 'Mail');
  check(ok, `title: expected "${title}"${!opts.js && streamed ? ' or "Mail"' : ''}, got "${t}"`);
}

async function expectPage(page, { heading, url, title }) {
  await waitHeading(page, heading);
  check(here(page) === url, `URL: expected ${url}, got ${here(page)}`);
  await checkTitle(page, title);
  check(await page.locator('header.topbar a.brand').count() === 1, 'the shell header is missing');
  check(await page.locator('footer.site-footer').count() === 1, 'the shell footer is missing');
  check(await page.locator('main#page').count() === 1, 'expected exactly one <main id="page">');
  const busy = await page.locator('main#page').getAttribute('aria-busy');
  check(busy === null, `main is still aria-busy="${busy}"`);
}

/* A marker on the shell: JS-enhanced navigation keeps the document, a real one does not. */
async function setMarker(page) {
  await page.evaluate(() => {
    document.querySelector('header.topbar').setAttribute('data-test-marker', 'kept');
    window.__figTestMarker = 'kept';
  });
}

async function checkMarker(page, what) {
  const m = await page.evaluate(() => {
    const h = document.querySelector('header.topbar');
    return [h ? h.getAttribute('data-test-marker') : null, window.__figTestMarker || null];
  });
  if (opts.js) {
    check(m[0] === 'kept' && m[1] === 'kept', `${what}: the shell was reloaded (marker lost) although JavaScript is on`);
  } else {
    check(m[0] === null && m[1] === null, `${what}: the document was not replaced although JavaScript is off`);
  }
  await setMarker(page);
}

async function checkFocus(page, what) {
  if (!opts.js) return;
  const f = await page.evaluate(() => {
    const a = document.activeElement;
    return a && a.closest('main#page') ? a.tagName : (a ? a.tagName + ' (outside main)' : 'none');
  });
  check(/^(H1|H2|H3|MAIN|INPUT|TEXTAREA|SELECT|BUTTON)$/.test(f), `${what}: focus is on ${f}, not on the new page`);
}

async function rowText(page, id) {
  const row = page.locator('main#page tr').filter({ has: page.locator(`a[href="/mail/message/${id}"]`) });
  check(await row.count() === 1, `expected one row linking to /mail/message/${id}, found ${await row.count()}`);
  return row.innerText();
}

/* ---- the flows ---- */

async function openInbox(page) {
  await step(page, 'inbox', async () => {
    await page.goto(`${opts.base}/mail/`, { waitUntil: 'load', timeout: WAIT_MS });
    await expectPage(page, { heading: 'Inbox', url: '/mail/', title: 'Inbox — Mail' });
    await setMarker(page);
  });
}

async function mainFlow(page) {
  await openInbox(page);
  check(/\bread\b/.test(await rowText(page, 46)) && !/unread/.test(await rowText(page, 46)),
        'message 46 should start as read');

  await step(page, 'open-message', async () => {
    await page.locator('main#page a[href="/mail/message/46"]').click();
    await expectPage(page, { heading: 'Message', url: '/mail/message/46', title: 'Message — Mail' });
    check((await page.locator('main#page article.message').innerText()).includes('Ramen?'), 'the message is not shown');
    await checkMarker(page, 'open message');
    await checkFocus(page, 'open message');
  });

  await step(page, 'back', async () => {
    await page.goBack({ timeout: WAIT_MS });
    await expectPage(page, { heading: 'Inbox', url: '/mail/', title: 'Inbox — Mail' });
    await checkMarker(page, 'back');
  });

  await step(page, 'forward', async () => {
    await page.goForward({ timeout: WAIT_MS });
    await expectPage(page, { heading: 'Message', url: '/mail/message/46', title: 'Message — Mail' });
    await checkMarker(page, 'forward');
  });

  await step(page, 'mark-unread', async () => {
    await page.locator('main#page button', { hasText: 'Mark unread' }).click();
    /* with app.js a POST answer that is not a redirect keeps the URL of the page that
     * holds the form (reloading it must not re-post); without, the browser shows the action */
    await expectPage(page, {
      heading: 'Marked as unread',
      url: opts.js ? '/mail/message/46' : '/mail/message/46/unread',
      title: 'Marked as unread — Mail',
    });
    check((await page.locator('main#page p.done').innerText()).includes('is marked as unread'), 'no confirmation text');
    await checkMarker(page, 'mark unread');
  });

  await step(page, 'inbox-shows-unread', async () => {
    await page.locator('main#page a', { hasText: 'Back to inbox' }).click();
    await expectPage(page, { heading: 'Inbox', url: '/mail/', title: 'Inbox — Mail' });
    check(/unread/.test(await rowText(page, 46)), 'message 46 is not shown as unread after "Mark unread"');
    await checkMarker(page, 'inbox after mark unread');
  });

  await step(page, 'search', async () => {
    await page.locator('main#page form.search input[name="q"]').fill('offsite');
    const button = page.locator('main#page form.search button[name="scope"]');
    await button.click();
    if (opts.js) {
      /* the model takes 0.7 s for this page: the loading state must show meanwhile */
      const s = await page.evaluate(() => ({
        loading: document.body.classList.contains('fig-loading'),
        busy: document.querySelector('main#page').getAttribute('aria-busy'),
        disabled: document.querySelector('main#page form.search button[name="scope"]').disabled,
      }));
      check(s.loading && s.busy === 'true' && s.disabled,
            `no loading state right after submitting: ${JSON.stringify(s)}`);
    }
    await expectPage(page, { heading: 'Search: offsite', url: '/mail/search?q=offsite&scope=all', title: 'Search: offsite — Mail' });
    const n = await page.locator('main#page tr a[href^="/mail/message/"]').count();
    check(n === 3, `expected 3 search results, got ${n}`);
    await checkMarker(page, 'search');
  });

  await step(page, 'back-from-search', async () => {
    await page.goBack({ timeout: WAIT_MS });
    await expectPage(page, { heading: 'Inbox', url: '/mail/', title: 'Inbox — Mail' });
    await checkMarker(page, 'back from search');
  });
  /* a link outside the app is left to the browser, with or without JavaScript */
  await step(page, 'leave-app', async () => {
    await Promise.all([
      page.waitForURL(`${opts.base}/`, { waitUntil: 'load', timeout: WAIT_MS }),
      page.locator('header.topbar a', { hasText: 'All apps' }).click(),
    ]);
    const m = await page.evaluate(() => window.__figTestMarker || null);
    check(m === null, 'the link to the gallery did not load a new document');
    check(await page.locator(`a[href="/mail/"]`).count() >= 1, 'the gallery does not list the mail app');
  });
}

async function openMessage43(page) {
  await page.locator('main#page a[href="/mail/message/43"]').click();
  await expectPage(page, { heading: 'Message', url: '/mail/message/43', title: 'Message — Mail' });
  check((await page.locator('main#page article.message').innerText()).includes('API v1 deprecation date?'),
        'message 43 is not shown');
}

/* figment's own page (not the model's): the exact SQL, what it does, confirm/cancel */
async function expectConfirmPage(page) {
  const section = page.locator('main#page section.confirm');
  try {
    await section.waitFor({ state: 'visible', timeout: WAIT_MS });
  } catch (e) {
    const now = await page.locator('main#page').innerText().catch(() => '(no main)');
    throw new Failure(`expected figment's confirmation page, got at ${page.url()}:\n${now.slice(0, 1500)}`);
  }
  if (opts.js) await page.locator('body:not(.fig-loading)').waitFor({ timeout: WAIT_MS });
  check(await section.locator('h1, h2').count() >= 1, 'the confirmation has no heading');
  const action = await section.locator('pre.confirm-action').innerText();
  check(action.includes('DELETE FROM messages WHERE id = 43'), `the confirmation does not show the SQL: ${action}`);
  check((await section.innerText()).includes('This deletes 1 row from messages.'), 'the confirmation does not say what it deletes');
  const form = section.locator('form.confirm-form');
  check(await form.count() === 1, 'no confirmation form');
  check(/^\/mail\/_confirm\/[0-9a-f]{32}$/.test(await form.getAttribute('action')), 'bad confirmation form action');
  check((await form.getAttribute('method')).toLowerCase() === 'post', 'the confirmation form is not a POST');
  check(await form.locator('input[type="hidden"][name="_csrf"]').count() === 1, 'no CSRF field in the confirmation form');
  check(await form.locator('button[name="decision"][value="confirm"]').count() === 1, 'no Confirm button');
  check(await form.locator('button[name="decision"][value="cancel"]').count() === 1, 'no Cancel button');
}

async function deleteFlow(page) {
  await openInbox(page);
  await rowText(page, 43);

  await step(page, 'open-message', async () => {
    await openMessage43(page);
    await checkMarker(page, 'open message');
  });

  await step(page, 'delete-asks', async () => {
    await page.locator('main#page button', { hasText: 'Delete' }).click();
    await expectConfirmPage(page);
    await checkMarker(page, 'confirmation page');
  });

  await step(page, 'cancel', async () => {
    await page.locator('main#page form.confirm-form button[value="cancel"]').click();
    /* the model goes on, told that the user declined (the script's "not deleted" page) */
    await waitHeading(page, 'Message not deleted');
    check(await page.locator('main#page section.confirm').count() === 0, 'the confirmation is still shown');
    await checkTitle(page, 'Message not deleted — Mail');
    await checkMarker(page, 'cancel');
  });

  await step(page, 'inbox-after-cancel', async () => {
    await page.locator('header.topbar a.brand').click();
    await expectPage(page, { heading: 'Inbox', url: '/mail/', title: 'Inbox — Mail' });
    await rowText(page, 43); /* still there */
    await checkMarker(page, 'inbox after cancel');
  });

  await step(page, 'delete-asks-again', async () => {
    await openMessage43(page);
    await page.locator('main#page button', { hasText: 'Delete' }).click();
    await expectConfirmPage(page);
    await checkMarker(page, 'confirmation page again');
  });

  await step(page, 'confirm', async () => {
    await page.locator('main#page form.confirm-form button[value="confirm"]').click();
    await waitHeading(page, 'Message deleted');
    check((await page.locator('main#page p.done').innerText()).includes('was deleted'), 'no deletion text');
    await checkTitle(page, 'Message deleted — Mail');
    await checkMarker(page, 'confirm');
  });

  await step(page, 'inbox-after-delete', async () => {
    await page.locator('main#page a', { hasText: 'Back to inbox' }).click();
    await expectPage(page, { heading: 'Inbox', url: '/mail/', title: 'Inbox — Mail' });
    const n = await page.locator('main#page a[href="/mail/message/43"]').count();
    check(n === 0, 'the deleted message is still in the inbox');
    await checkMarker(page, 'inbox after delete');
  });
}

async function run() {
  fs.mkdirSync(opts.artifacts, { recursive: true });
  /* screenshots of an earlier run of this flow and mode would mislead */
  for (const f of fs.readdirSync(opts.artifacts)) {
    if (f.startsWith(`${opts.flow}-${MODE}-`) && f.endsWith('.png')) fs.unlinkSync(path.join(opts.artifacts, f));
  }
  const t0 = Date.now();
  /* Chromium refuses to run as root with its sandbox on */
  const args = process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [];
  const browser = await chromium.launch({ executablePath: opts.chromium, args, timeout: WAIT_MS });
  let page = null;
  try {
    const context = await browser.newContext({ javaScriptEnabled: opts.js, viewport: { width: 1000, height: 760 } });
    if (opts.js) {
      /* the event, not only Chromium's console line: both must stay silent */
      await context.exposeBinding('__figReportCsp', (source, v) => problems.push(`CSP violation: ${v}`));
      await context.addInitScript(() => {
        document.addEventListener('securitypolicyviolation', (e) => {
          window.__figReportCsp(`${e.violatedDirective} blocked ${e.blockedURI} at ${e.sourceFile}:${e.lineNumber}`);
        }, true);
      });
    }
    page = await context.newPage();
    page.setDefaultTimeout(WAIT_MS);
    watch(page);
    if (opts.flow === 'main') await mainFlow(page);
    else await deleteFlow(page);

    /* let late console messages and reports arrive */
    await page.waitForTimeout(200);
    check(problems.length === 0, `the page reported problems:\n  ${problems.join('\n  ')}`);
    if (opts.js) {
      check(appJsLoaded, '/static/app.js was not loaded');
      check(fetches > 0, 'app.js never fetched a page: the enhanced path did not run');
    } else {
      check(fetches === 0, `${fetches} fetch() requests with JavaScript off`);
    }
    process.stdout.write(`browser flow ${opts.flow} (${MODE}) ok: ${stepNo} steps in ${Date.now() - t0} ms ` +
                         `(${timings.join(', ')})\n`);
    for (const n of notes) process.stdout.write(`note: ${n}\n`);
  } catch (e) {
    if (page) {
      await page.screenshot({ path: path.join(opts.artifacts, `${opts.flow}-${MODE}-FAILED.png`), fullPage: true })
        .catch(() => {});
    }
    const extra = problems.length ? `\nproblems so far:\n  ${problems.join('\n  ')}` : '';
    process.stderr.write(`browser flow ${opts.flow} (${MODE}) FAILED at step ${stepNo} (${stepName}): ` +
                         `${e instanceof Failure ? e.message : e.stack}${extra}\n`);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

run();
