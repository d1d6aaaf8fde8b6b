// The sequence diagrams Twofold draws, checked by the real parsers: `twofold diagram` (the login flow) and
// `twofold audit diagram FLOW_ID` (real logins: an authenticator code wrong then right, and a code by text message),
// each in Mermaid and ZenUML. Mermaid's own browser bundle parses every Mermaid text in headless Chromium and renders
// one to SVG (saved as a screenshot to look at); ZenUML's headless parser (`@zenuml/core/parser`, the ANTLR grammar
// its renderer uses) validates every ZenUML text in Node. A deliberately broken diagram of each kind must be refused,
// which proves the parser really runs.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { after, before, describe, it } from "node:test";

import { validate as validateZenUml } from "@zenuml/core/parser";

import { Authenticator, launchBrowser, screenshot, startServer, startSmsGateway } from "./harness.js";

const require = createRequire(import.meta.url);
const mermaidBundle = require.resolve("mermaid/dist/mermaid.min.js");
const PASSWORD = "correct horse battery staple";
const PHONE = "+447700900123";

/** A JSON API client with one session cookie, as a non-browser app would use Twofold. */
class ApiClient {
  constructor(server) {
    this.server = server;
    this.cookie = null;
  }

  async post(path, body) {
    const response = await fetch(this.server.url(path), {
      method: "POST",
      headers: { "content-type": "application/json", ...(this.cookie ? { cookie: this.cookie } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const cookie = response.headers.get("set-cookie");
    if (cookie?.startsWith("twofold_session=")) this.cookie = cookie.split(";")[0];
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null };
  }
}

describe("Sequence diagrams in the real Mermaid and ZenUML parsers", () => {
  let gateway;
  let server;
  let browser;
  let page;
  /** name → text of every diagram drawn, in both formats. */
  const diagrams = { mermaid: new Map(), zenuml: new Map() };

  function draw(name, args) {
    diagrams.mermaid.set(name, server.run(args));
    diagrams.zenuml.set(name, server.run([...args, "--format", "zenuml"]));
  }

  /** The flow id of `username`'s last password step that asked for a second factor, from the audit trail. */
  function lastLoginFlow(username) {
    const events = server
      .run(["audit", "--json", "--event", "login", "--user", username])
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line))
      .filter((event) => event.outcome === "second_factor_required");
    assert.ok(events.length > 0, `a login of ${username} is in the audit trail`);
    return events.at(-1).flow_id;
  }

  before(async () => {
    gateway = await startSmsGateway();
    server = await startServer({
      env: {
        TWOFOLD_SMS__GATEWAY: "http",
        TWOFOLD_SMS__URL: gateway.url,
        TWOFOLD_SMS__TIMEOUT: "500ms",
      },
    });
    browser = await launchBrowser();
    page = await browser.newPage();
    await page.setContent("<!doctype html><html><head><title>Diagrams</title></head><body></body></html>");
    await page.addScriptTag({ path: mermaidBundle });
    await page.evaluate(() => window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict" }));
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    await gateway?.stop();
  });

  it("draws the login flow and two real logins from the audit trail", async () => {
    draw("flow", ["diagram"]);

    // An authenticator app, enrolled through the JSON API; then a login with a wrong code, then the right one.
    server.addUser("diana", PASSWORD);
    const diana = new ApiClient(server);
    assert.equal((await diana.post("/auth/login", { username: "diana", password: PASSWORD })).status, 200);
    const setup = await diana.post("/auth/2fa/totp/setup");
    assert.equal(setup.status, 200);
    const app = new Authenticator(setup.body.secret);
    assert.equal((await diana.post("/auth/2fa/totp/confirm", { code: await app.nextCode() })).status, 200);
    const login = await diana.post("/auth/login", { username: "diana", password: PASSWORD });
    assert.equal(login.body.status, "2fa_required");
    const wrong = await diana.post("/auth/verify-2fa", { method: "totp", code: app.wrongCode() });
    assert.equal(wrong.status, 401);
    const right = await diana.post("/auth/verify-2fa", { method: "totp", code: await app.nextCode() });
    assert.equal(right.status, 200, JSON.stringify(right.body));
    draw("totp login", ["audit", "diagram", lastLoginFlow("diana")]);

    // A phone, enrolled through the JSON API with the code the stand-in gateway got; then a login by text message.
    server.addUser("eve.adams@example.com", PASSWORD);
    const eve = new ApiClient(server);
    await eve.post("/auth/login", { username: "eve.adams@example.com", password: PASSWORD });
    assert.equal((await eve.post("/auth/2fa/sms/setup", { phone: PHONE })).status, 202);
    assert.equal((await eve.post("/auth/2fa/sms/confirm", { code: gateway.lastCode(PHONE) })).status, 200);
    await eve.post("/auth/login", { username: "eve.adams@example.com", password: PASSWORD });
    // The enrolment's code went out a moment ago, so the send limit refuses this one: the diagram shows that too.
    const throttled = await eve.post("/auth/2fa/sms/send");
    assert.equal(throttled.status, 429);
    const recovery = await eve.post("/auth/verify-2fa", { method: "recovery_code", code: "AAAA-AAAA-AAAA-AAAA" });
    assert.equal(recovery.status, 401);
    await eve.post("/auth/logout");
    draw("sms login", ["audit", "diagram", lastLoginFlow("eve.adams@example.com")]);

    for (const [name, text] of diagrams.mermaid) {
      assert.match(text, /^sequenceDiagram\n/, `${name} is a Mermaid sequence diagram`);
    }
    assert.match(diagrams.mermaid.get("totp login"), /invalid_code/);
    assert.match(diagrams.mermaid.get("sms login"), /SMS/);
  });

  it("every Mermaid diagram parses with mermaid.parse, and a broken one is refused", async () => {
    for (const [name, text] of diagrams.mermaid) {
      const result = await page.evaluate(async (source) => {
        try {
          return { ok: true, type: (await window.mermaid.parse(source)).diagramType };
        } catch (error) {
          return { ok: false, message: String(error?.message ?? error) };
        }
      }, text);
      assert.deepEqual(result, { ok: true, type: "sequence" }, `${name}:\n${text}\n${result.message ?? ""}`);
    }
    // The negative control: an unclosed alternative and a message with no arrow.
    const broken = await page.evaluate(async () => {
      try {
        await window.mermaid.parse("sequenceDiagram\n  alt password right\n  Client Twofold: POST /auth/login\n");
        return "parsed";
      } catch (error) {
        return String(error?.message ?? error);
      }
    });
    assert.match(broken, /Parse error/, "mermaid.parse refuses a broken diagram");
  });

  it("renders the login flow and a real login to SVG", async () => {
    for (const name of ["flow", "totp login"]) {
      const svg = await page.evaluate(
        async ({ source, id }) => {
          const { svg } = await window.mermaid.render(id, source);
          const figure = document.createElement("figure");
          figure.innerHTML = svg;
          document.body.replaceChildren(figure);
          return svg;
        },
        { source: diagrams.mermaid.get(name), id: name.replace(/\W/g, "-") },
      );
      assert.match(svg, /^<svg/);
      const drawn = (await page.locator("figure svg text").allTextContents()).map((text) => text.trim());
      assert.ok(drawn.includes("Twofold"), `${name}: the participants are drawn`);
      assert.ok(
        drawn.some((text) => text.includes("POST /auth/login")),
        `${name}: the messages are drawn`,
      );
      await screenshot(page, `diagram-${name.replace(/\W/g, "-")}`);
    }
  });

  it("every ZenUML diagram passes ZenUML's own parser, and a broken one is refused", () => {
    for (const [name, text] of diagrams.zenuml) {
      const result = validateZenUml(text);
      assert.deepEqual(result.errorDetails, [], `${name}:\n${text}`);
      assert.equal(result.pass, true, name);
    }
    // The negative control: a condition that starts with a digit (the bug the real parser found) and an unclosed
    // block.
    const digit = validateZenUml("@Actor User\nif(5_minutes_pass) {\n  User->Twofold: hello\n}\n");
    assert.equal(digit.pass, false, "a condition may not start with a digit");
    const unclosed = validateZenUml("@Actor User\nif(ready) {\n  User->Twofold: hello\n");
    assert.equal(unclosed.pass, false, "an unclosed block is refused");
  });
});
