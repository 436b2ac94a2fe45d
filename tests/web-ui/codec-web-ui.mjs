// The Temporal Web UI in headless Chromium against our codec server. Run by
// scripts/checks/codec-web-ui, which starts everything and passes it in the environment.
//
// The UI is put in the state a user logged in with OIDC has, before its code runs: the auth-user
// store (localStorage "AuthUser": accessToken, idToken; what the UI's consumeAuthCookies writes
// after the login callback) and the Data Encoder settings (localStorage "endpoint",
// "passAccessToken", "overrideRemoteCodecConfiguration"; what the Data Encoder dialog writes). The
// UI's own code (services/data-encoder.ts codeServerRequest) then adds `Authorization: Bearer
// <access token>` and `Authorization-Extras: <id token>` to its codec requests, and Chromium sends
// the real CORS preflight. The only answer the test changes is the UI server's /api/v1/settings
// (Auth.Enabled = true, as with OIDC configured); no codec request is modified.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run scripts/checks/codec-web-ui)`);
  return v;
};
const CHROMIUM = env('CHROMIUM');
const UI_ORIGIN = env('UI_ORIGIN');
const CODEC_URL = env('CODEC_URL');
const WF = env('WF');
const RUN = env('RUN');
const EXT_WF = env('EXT_WF');
const EXT_RUN = env('EXT_RUN');
const MARKER = env('MARKER');
const RESULT = `processed: ${MARKER}`;
const ARTIFACTS = env('ARTIFACTS');
const CODEC_LOG = env('CODEC_LOG');
const PROFILE_DIR = env('PROFILE_DIR');
const ENC_PAYLOAD = JSON.parse(env('ENC_PAYLOAD'));
const TOKENS = JSON.parse(readFileSync(env('TOKENS_FILE'), 'utf8'));
const SPKI = readFileSync(env('SPKI_FILE'), 'utf8').trim();
const UI_PORT = new URL(UI_ORIGIN).port;

const ok = (msg) => console.log(`ok: ${msg}`);
class Failure extends Error {}
const check = (cond, msg) => {
  if (!cond) throw new Failure(msg);
};
const b64 = (s) => Buffer.from(s).toString('base64');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- the codec server's audit log (--log-format json, target "audit") ---------------------------
function auditLines() {
  return readFileSync(CODEC_LOG, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      try {
        return JSON.parse(l);
      } catch {
        return null;
      }
    })
    .filter((j) => j && j.target === 'audit')
    .map((j) => j.fields);
}
async function awaitAudit(pred, what, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = auditLines().find(pred);
    if (hit) return hit;
    if (Date.now() > deadline) {
      const seen = auditLines()
        .map((f) => `${f.operation}/${f.caller}/${f.namespace}/${f.outcome}/${f.origin}`)
        .join(', ');
      throw new Failure(`no audit line for ${what} (audit lines: ${seen || 'none'})`);
    }
    await sleep(200);
  }
}

// --- one browser per caller, a fresh profile each --------------------------------------------------
async function openAs(who) {
  const user = TOKENS[who];
  const context = await chromium.launchPersistentContext(join(PROFILE_DIR, who), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // Trust exactly the codec server's self-signed certificate (works with a user-data-dir).
      `--ignore-certificate-errors-spki-list=${SPKI}`,
    ],
  });
  await context.addInitScript(
    ({ origin, codec, accessToken, idToken, name, email }) => {
      if (window.location.origin !== origin) return;
      localStorage.setItem('AuthUser', JSON.stringify({ accessToken, idToken, name, email }));
      localStorage.setItem('endpoint', JSON.stringify(codec));
      localStorage.setItem('passAccessToken', 'true');
      localStorage.setItem('overrideRemoteCodecConfiguration', 'true');
    },
    {
      origin: UI_ORIGIN,
      codec: CODEC_URL,
      accessToken: user.accessToken,
      idToken: user.idToken,
      name: who,
      email: user.email,
    },
  );
  const page = context.pages()[0] ?? (await context.newPage());
  const codecRequests = []; // what Chromium sent to the codec server, as seen by the page
  page.on('request', async (req) => {
    if (!req.url().startsWith(CODEC_URL)) return;
    const entry = { method: req.method(), url: req.url(), headers: await req.allHeaders() };
    codecRequests.push(entry);
    const resp = await req.response().catch(() => null);
    entry.status = resp ? resp.status() : 'failed';
  });
  // Preflights are not page requests in Playwright; the DevTools protocol reports them.
  const preflights = [];
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  // The dev server's UI runs without OIDC (start-dev has no auth flags), and the UI clears the
  // auth-user store when its settings say auth is off (routes/(app)/+layout.ts). So the settings
  // answer, and only it, says what a UI server with OIDC configured says: Auth.Enabled = true.
  // Raw DevTools Fetch with a pattern matching only that URL: Playwright's page.route would make
  // Playwright answer every CORS preflight itself (204, allow all), so the codec server would
  // never see the browser's real preflight.
  await cdp.send('Fetch.enable', {
    patterns: [{ urlPattern: `${UI_ORIGIN}/api/v1/settings*`, requestStage: 'Response' }],
  });
  cdp.on('Fetch.requestPaused', async (e) => {
    try {
      const { body, base64Encoded } = await cdp.send('Fetch.getResponseBody', { requestId: e.requestId });
      const json = JSON.parse(base64Encoded ? Buffer.from(body, 'base64').toString() : body);
      json.Auth = { ...json.Auth, Enabled: true };
      await cdp.send('Fetch.fulfillRequest', {
        requestId: e.requestId,
        responseCode: e.responseStatusCode ?? 200,
        responseHeaders: (e.responseHeaders ?? []).filter((h) => !/^content-(length|encoding)$/i.test(h.name)),
        body: Buffer.from(JSON.stringify(json)).toString('base64'),
      });
    } catch (err) {
      await cdp.send('Fetch.continueRequest', { requestId: e.requestId }).catch(() => {});
      console.error(`settings rewrite failed: ${err}`);
    }
  });
  cdp.on('Network.requestWillBeSent', (e) => {
    // Chromium reports its CORS preflight as an OPTIONS request of type "Other" (initiator
    // "preflight"); the page's code cannot send OPTIONS to another origin itself without one.
    if (e.request.method === 'OPTIONS' && e.request.url.startsWith(CODEC_URL)) {
      preflights.push({ id: e.requestId, url: e.request.url, headers: e.request.headers, initiator: e.initiator?.type });
    }
  });
  cdp.on('Network.responseReceived', (e) => {
    const p = preflights.find((x) => x.id === e.requestId);
    if (p) {
      p.status = e.response.status;
      p.responseHeaders = Object.fromEntries(Object.entries(e.response.headers).map(([k, v]) => [k.toLowerCase(), v]));
    }
  });
  return { context, page, user, codecRequests, preflights };
}

const pageText = (page) => page.evaluate(() => document.body.innerText);
async function waitForText(page, needles, what, timeoutMs = 60000) {
  try {
    await page.waitForFunction(
      (ns) => ns.every((n) => document.body.innerText.includes(n)),
      needles,
      { timeout: timeoutMs, polling: 250 },
    );
  } catch {
    const path = join(ARTIFACTS, `failed-${what.replace(/[^a-z0-9]+/gi, '-')}.png`);
    await page.screenshot({ path, fullPage: true }).catch(() => {});
    throw new Failure(`${what}: the page never showed ${JSON.stringify(needles)} (screenshot: ${path})`);
  }
}
async function shot(page, name) {
  const path = join(ARTIFACTS, name);
  await page.screenshot({ path, fullPage: true });
  console.log(`screenshot: ${path}`);
}
const workflowUrl = (wf, run) =>
  `${UI_ORIGIN}/namespaces/default/workflows/${encodeURIComponent(wf)}/${run}/history`;

// A codec call made by the page itself, from the UI's origin, with the headers the UI sends.
function pageCodecFetch(page, path, namespace, user, payloads) {
  return page.evaluate(
    async ({ url, namespace, accessToken, idToken, payloads }) => {
      try {
        const r = await fetch(url, {
          method: 'POST',
          headers: {
            'Content-Type': 'application/json',
            'X-Namespace': namespace,
            Authorization: `Bearer ${accessToken}`,
            'Authorization-Extras': idToken,
          },
          body: JSON.stringify({ payloads }),
        });
        return { status: r.status, contentType: r.headers.get('content-type'), body: await r.text() };
      } catch (e) {
        return { status: 0, error: String(e) };
      }
    },
    { url: `${CODEC_URL}${path}`, namespace, accessToken: user.accessToken, idToken: user.idToken, payloads },
  );
}

async function main() {
  const browsers = [];
  try {
    // 1. The allowed caller sees the decoded input and result. ---------------------------------
    const a = await openAs('oncall');
    browsers.push(a.context);
    await a.page.goto(workflowUrl(WF, RUN), { waitUntil: 'domcontentloaded' });
    await waitForText(a.page, [MARKER, RESULT], 'decoded page (oncall)');
    await shot(a.page, 'decoded.png');
    ok(`the Web UI shows the decoded input "${MARKER}" and result "${RESULT}" of ${WF} for ${a.user.caller}`);

    const decodes = a.codecRequests.filter((r) => r.method === 'POST' && r.url.startsWith(`${CODEC_URL}/decode`));
    check(decodes.length > 0, `the UI made no POST ${CODEC_URL}/decode request`);
    for (const r of decodes) {
      check(r.headers['authorization'] === `Bearer ${a.user.accessToken}`,
        `a /decode request lacks "Authorization: Bearer <access token>": ${JSON.stringify(r.headers)}`);
      check(r.headers['authorization-extras'] === a.user.idToken,
        `a /decode request lacks "Authorization-Extras: <id token>": ${JSON.stringify(r.headers)}`);
      check(r.headers['x-namespace'] === 'default', `a /decode request has X-Namespace ${r.headers['x-namespace']}`);
      check(r.headers['origin'] === UI_ORIGIN, `a /decode request has Origin ${r.headers['origin']}`);
    }
    check(decodes.every((r) => r.status === 200), `a /decode answer was not 200: ${decodes.map((r) => r.status)}`);
    ok(`${decodes.length} POST /decode from Chromium carried Authorization: Bearer <access token> and Authorization-Extras: <id token> (set by the UI's own code from its auth-user store), X-Namespace: default, Origin ${UI_ORIGIN}; all answered 200`);

    check(a.preflights.length > 0, 'Chromium sent no CORS preflight to the codec server');
    const pf = a.preflights[0];
    const reqHeaders = Object.fromEntries(Object.entries(pf.headers).map(([k, v]) => [k.toLowerCase(), v]));
    check(/authorization-extras/i.test(reqHeaders['access-control-request-headers'] ?? ''),
      `the preflight did not ask for authorization-extras: ${JSON.stringify(pf.headers)}`);
    check(a.preflights.every((p) => p.status === 204), `a preflight was not answered 204: ${a.preflights.map((p) => p.status)}`);
    // Our server's answer (not a synthetic one): its exact allow-list and max-age.
    const rh = pf.responseHeaders ?? {};
    check(rh['access-control-allow-headers'] === 'authorization, authorization-extras, content-type, x-namespace' &&
      rh['access-control-allow-origin'] === UI_ORIGIN && rh['access-control-max-age'] === '600',
      `the preflight answer is not the codec server's: ${JSON.stringify(rh)}`);
    ok(`Chromium sent ${a.preflights.length} CORS preflight(s) (OPTIONS, Access-Control-Request-Headers: ${reqHeaders['access-control-request-headers']}); the codec server answered 204, Access-Control-Allow-Origin: ${rh['access-control-allow-origin']}, Allow-Headers: ${rh['access-control-allow-headers']}`);

    const decodeAudit = await awaitAudit(
      (f) => f.operation === 'decode' && f.caller === a.user.caller && f.namespace === 'default' && f.outcome === 'ok' && f.origin === UI_ORIGIN,
      `decode ok by ${a.user.caller}`,
    );
    ok(`audit: operation="decode" caller="${decodeAudit.caller}" namespace="default" outcome="ok" key_ids="${decodeAudit.key_ids}" origin="${decodeAudit.origin}"`);
    await awaitAudit(
      (f) => f.operation === 'preflight' && f.origin === UI_ORIGIN && f.outcome === 'ok' && f.status === 204,
      `an answered preflight from ${UI_ORIGIN}`,
    );
    ok(`audit: operation="preflight" origin="${UI_ORIGIN}" outcome="ok" (the browser's preflight, answered and audited)`);

    // 2. /download: the UI's own call for an externally stored payload. ---------------------------
    await a.page.goto(workflowUrl(EXT_WF, EXT_RUN), { waitUntil: 'domcontentloaded' });
    await waitForText(a.page, ['Payload downloads require a codec server'], 'external-storage page');
    const before = a.codecRequests.length;
    const button = a.page.getByRole('button', { name: /bytes/i }).first();
    await button.waitFor({ timeout: 30000 }).catch(() => {
      throw new Failure('the UI shows no download button for the ExternalStorageReference input');
    });
    await button.click();
    await waitForText(a.page, ["isn't configured to download from external storage"], 'download answer', 30000);
    const downloads = a.codecRequests.slice(before).filter((r) => r.url.startsWith(`${CODEC_URL}/download`));
    check(downloads.length === 1 && downloads[0].status === 404,
      `expected one POST /download answered 404, saw ${JSON.stringify(downloads.map((r) => [r.url, r.status]))}`);
    check(downloads[0].headers['authorization'] === `Bearer ${a.user.accessToken}` &&
      downloads[0].headers['authorization-extras'] === a.user.idToken,
      'the UI\'s /download request lacks the Authorization / Authorization-Extras headers');
    await awaitAudit(
      (f) => f.operation === 'download' && f.caller === a.user.caller && f.outcome === 'no_external_storage' && f.status === 404,
      `download no_external_storage by ${a.user.caller}`,
    );
    ok(`the UI itself called POST ${downloads[0].url.replace(CODEC_URL, '')} for the ExternalStorageReference input of ${EXT_WF} (download button); 404, the UI says "isn't configured to download from external storage"; audited outcome="no_external_storage"`);

    // The same route from the page's origin (CORS applies): a reference and an inline payload.
    const ref = {
      metadata: { encoding: b64('json/plain'), messageType: b64('temporal.api.sdk.v1.ExternalStorageReference') },
      data: b64('{"driver":"s3","key":"payloads/codec-web-ui"}'),
    };
    const r404 = await pageCodecFetch(a.page, '/download?preserveStorageRefs=true', 'default', a.user, [ref]);
    check(r404.status === 404 && /application\/json/.test(r404.contentType ?? '') &&
      /external payload storage/.test(JSON.parse(r404.body).error ?? ''),
      `/download of a reference from the page: ${JSON.stringify(r404)}`);
    const r200 = await pageCodecFetch(a.page, '/download?preserveStorageRefs=true', 'default', a.user, [ENC_PAYLOAD]);
    check(r200.status === 200, `/download of the inline encrypted input from the page: ${JSON.stringify(r200)}`);
    const inline = JSON.parse(r200.body).payloads[0];
    const inlineData = Buffer.from(inline.data, 'base64').toString();
    check(inlineData === JSON.stringify(MARKER), `inline /download decoded to ${inlineData}`);
    ok(`fetch() from ${UI_ORIGIN}: POST /download with an ExternalStorageReference payload -> 404 JSON {"error": "${JSON.parse(r404.body).error}"}; with the inline encrypted input -> 200 and the plaintext ${inlineData}`);

    // 3. The caller without rights on `default` sees ciphertext. ----------------------------------
    const b = await openAs('outsider');
    browsers.push(b.context);
    await b.page.goto(workflowUrl(WF, RUN), { waitUntil: 'domcontentloaded' });
    const denied = await awaitAudit(
      (f) => f.operation === 'decode' && f.caller === b.user.caller && f.namespace === 'default' && f.outcome === 'forbidden',
      `decode forbidden for ${b.user.caller}`,
      60000,
    );
    // The UI shows the stored payload's data as it is: the base64 ciphertext of the input.
    const cipherHead = ENC_PAYLOAD.data.slice(0, 32);
    await waitForText(b.page, [cipherHead, 'Codec Server could not connect'], 'ciphertext page (outsider)', 30000);
    await sleep(1500); // the UI retries nothing on 4xx; let it settle before reading the page
    const text = await pageText(b.page);
    check(!text.includes(MARKER.replace('card ', '')), 'the page of the caller without rights shows the marker');
    await shot(b.page, 'ciphertext.png');
    const bDecodes = b.codecRequests.filter((r) => r.url.startsWith(`${CODEC_URL}/decode`));
    check(bDecodes.length > 0 && bDecodes.every((r) => r.status === 403),
      `the outsider's /decode answers: ${bDecodes.map((r) => r.status)}`);
    ok(`for ${b.user.caller} (decode right only on other-team) the same page shows the input's ciphertext ("${cipherHead}...") and "Codec Server could not connect", not the marker; /decode answered 403; audit: caller="${denied.caller}" namespace="default" outcome="forbidden" status=${denied.status}`);

    // 4. A page on an origin not in cors_origins: the browser's preflight is refused. -------------
    const foreign = `http://localhost:${UI_PORT}`;
    await b.page.goto(`${foreign}/api/v1/settings`);
    const refused = await pageCodecFetch(b.page, '/decode', 'default', a.user, [ENC_PAYLOAD]);
    check(refused.status === 0, `a fetch from ${foreign} was not blocked by CORS: ${JSON.stringify(refused)}`);
    const foreignAudit = await awaitAudit(
      (f) => f.operation === 'preflight' && f.origin === foreign && f.outcome === 'forbidden_origin',
      `a refused preflight from ${foreign}`,
    );
    ok(`from ${foreign} (not in cors_origins) Chromium's preflight was refused (fetch failed: ${refused.error}); audit: operation="preflight" outcome="${foreignAudit.outcome}" status=${foreignAudit.status}`);

    // 5. The allowed origin's answered preflights in the audit log, if this binary audits them.
    const answered = auditLines().filter((f) => f.operation === 'preflight' && f.origin === UI_ORIGIN);
    if (answered.length > 0) {
      ok(`audit: ${answered.length} operation="preflight" line(s) from ${UI_ORIGIN}, outcome="${answered[0].outcome}"`);
    } else {
      console.log(`note: the codec server audits refused preflights only; the ${a.preflights.length} answered preflight(s) from ${UI_ORIGIN} are proven from Chromium's side above`);
    }
  } finally {
    for (const c of browsers) await c.close().catch(() => {});
  }
}

main().catch((e) => {
  console.error(`codec-web-ui.mjs: ${e instanceof Failure ? e.message : e.stack}`);
  process.exit(1);
});
