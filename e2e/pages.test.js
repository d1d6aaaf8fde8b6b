// End-to-end tests of Twofold's pages in headless Chromium against the real binary: registration, enrolling an
// authenticator app, signing out and in through both steps, a wrong code, a recovery code, open-redirect attempts,
// forged form posts, and the error pages. Every page visited is saved as a screenshot in e2e/screenshots.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Authenticator, launchBrowser, readText, screenshot, startServer } from "./harness.js";

const PASSWORD = "correct horse battery staple";

describe("Twofold's pages in a browser", () => {
  let server;
  let browser;
  let context;
  let page;
  let app; // alice's authenticator
  let recoveryCodes = [];

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    context = await browser.newContext({ viewport: { width: 1024, height: 768 } });
    page = await context.newPage();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  async function signInWithPassword(username, path = "/login") {
    await page.goto(server.url(path));
    await page.getByLabel("Username").fill(username);
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Continue" }).click();
  }

  async function signOut() {
    await page.getByRole("button", { name: /^Sign out/ }).first().click();
    await page.waitForURL(/\/login\?notice=signed_out$/);
  }

  it("registers a new account and invites it to add a second factor", async () => {
    await page.goto(server.url("/login"));
    await screenshot(page, "login");
    await page.getByRole("link", { name: "Create an account" }).click();
    assert.equal(new URL(page.url()).pathname, "/register");
    await page.getByLabel("Username").fill("carol");
    await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
    await page.getByLabel("Password again").fill("something else entirely");
    await screenshot(page, "register");
    await page.getByRole("button", { name: "Create account" }).click();
    await assert.doesNotReject(page.getByText("The two passwords are not the same").waitFor());
    await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
    await page.getByLabel("Password again").fill(PASSWORD);
    await page.getByRole("button", { name: "Create account" }).click();
    await page.waitForURL(/\/settings\/security\?notice=welcome$/);
    await page.getByText("Your account is ready").waitFor();
    await screenshot(page, "registered-security");
    await signOut();
  });

  it("enrolls an authenticator app on the security page and shows the recovery codes once", async () => {
    server.addUser("alice", PASSWORD);
    await signInWithPassword("alice");
    await page.waitForURL(server.url("/"));
    await page.getByRole("heading", { name: "Protect your account" }).waitFor();
    await screenshot(page, "dashboard-password-only");

    await page.getByRole("link", { name: "Set up an authenticator app" }).click();
    await page.waitForURL(server.url("/settings/security"));
    await screenshot(page, "security-off");
    await page.getByRole("button", { name: "Set up an authenticator app" }).click();
    await page.waitForURL(server.url("/settings/security/totp"));
    assert.equal(await page.locator(".qr svg").count(), 1, "the QR code is on the page");
    const secret = (await page.locator("#secret").innerText()).replace(/\s/g, "");
    assert.match(secret, /^[A-Z2-7]{32}$/);
    app = new Authenticator(secret);
    await screenshot(page, "totp-setup");

    await page.getByLabel("6-digit code").fill(app.wrongCode());
    await page.getByRole("button", { name: "Turn on" }).click();
    await page.getByText("That code is not right").waitFor();
    assert.equal((await page.locator("#secret").innerText()).replace(/\s/g, ""), secret, "same secret after a miss");
    await screenshot(page, "totp-setup-wrong-code");

    await page.getByLabel("6-digit code").fill(await app.nextCode());
    await page.getByRole("button", { name: "Turn on" }).click();
    await page.getByRole("heading", { name: "Save your recovery codes" }).waitFor();
    recoveryCodes = (await page.locator("#recovery-codes").innerText()).trim().split(/\s+/);
    assert.equal(recoveryCodes.length, 10);
    for (const code of recoveryCodes) assert.match(code, /^[A-Z2-7]{4}(-[A-Z2-7]{4}){3}$/);

    // The copy button is JavaScript from /static/copy.js (allowed by the CSP); it appears only when it can work.
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.base });
    await page.getByRole("button", { name: "Copy the codes" }).click();
    await page.getByText("Copied.").waitFor();
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    assert.deepEqual(copied.trim().split(/\s+/), recoveryCodes);
    await screenshot(page, "recovery-codes");

    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: "Download as a text file" }).click(),
    ]);
    assert.equal(download.suggestedFilename(), "recovery-codes.txt");
    const file = readText(await download.path());
    for (const code of recoveryCodes) assert.ok(file.includes(code), `${code} is in the file`);
    assert.match(file, /Recovery codes for alice/);

    await page.getByRole("link", { name: "I have saved them" }).click();
    await page.waitForURL(server.url("/settings/security"));
    await page.getByText("10 of 10").waitFor();
    assert.equal(await page.locator(".badge.on").count(), 1);
    await screenshot(page, "security-on");
  });

  it("signs out", async () => {
    await signOut();
    await page.getByText("You have signed out.").waitFor();
    await screenshot(page, "signed-out");
    await page.goto(server.url("/"));
    await page.waitForURL(/\/login\?return_to=%2F$/);
  });

  it("shows a wrong code's message with the tries left, and a pending sign-in opens only the second step", async () => {
    await signInWithPassword("alice");
    await page.waitForURL(server.url("/login/2fa"));
    const code = page.getByLabel("Code from your authenticator app");
    assert.equal(await code.getAttribute("autocomplete"), "one-time-code");
    assert.equal(await code.getAttribute("inputmode"), "numeric");
    await screenshot(page, "second-step");

    for (const path of ["/", "/settings/security", "/login", "/register"]) {
      await page.goto(server.url(path));
      assert.equal(new URL(page.url()).pathname, "/login/2fa", `${path} sends a pending sign-in to the second step`);
    }

    await code.fill(app.wrongCode());
    await page.getByRole("button", { name: "Verify" }).click();
    const error = page.getByRole("alert");
    await error.waitFor();
    assert.match(await error.innerText(), /not valid; 4 tries left/);
    assert.equal(new URL(page.url()).pathname, "/login/2fa");
    await screenshot(page, "second-step-wrong-code");
  });

  it("signs in through both steps onto the dashboard, which tells of the wrong codes", async () => {
    await page.getByLabel("Code from your authenticator app").fill(await app.nextCode());
    await page.getByRole("button", { name: "Verify" }).click();
    await page.waitForURL(server.url("/"));
    await page.getByRole("heading", { name: "Hello, alice" }).waitFor();
    const facts = await page.locator(".facts").innerText();
    assert.match(facts, /Authenticator app/);
    assert.match(facts, /UTC/);
    // The wrong code at enrolment and the one at the second step.
    assert.match(await page.locator(".warning").innerText(), /2 wrong second-factor codes were entered/);
    await screenshot(page, "dashboard");
    await signOut();
  });

  it("signs in with a recovery code, which is then used up", async () => {
    await signInWithPassword("alice");
    await page.waitForURL(server.url("/login/2fa"));
    await page.getByRole("link", { name: "Use a recovery code" }).click();
    const field = page.getByLabel("Recovery code");
    assert.notEqual(await field.getAttribute("inputmode"), "numeric", "recovery codes have letters");
    await screenshot(page, "second-step-recovery-code");
    await field.fill(recoveryCodes[0].toLowerCase());
    await page.getByRole("button", { name: "Verify" }).click();
    await page.waitForURL(server.url("/"));
    assert.match(await page.locator(".facts").innerText(), /Recovery code/);
    await page.goto(server.url("/settings/security"));
    await page.getByText("9 of 10").waitFor();
    await signOut();

    await signInWithPassword("alice");
    await page.getByRole("link", { name: "Use a recovery code" }).click();
    await page.getByLabel("Recovery code").fill(recoveryCodes[0]);
    await page.getByRole("button", { name: "Verify" }).click();
    await page.getByRole("alert").waitFor();
    assert.match(await page.getByRole("alert").innerText(), /not valid; 4 tries left/);
    await page.getByRole("button", { name: "Cancel and sign in as someone else" }).click();
    await page.waitForURL(/\/login\?notice=signed_out$/);
  });

  it("never follows return_to off the site", async () => {
    server.addUser("dave", PASSWORD);
    for (const target of ["https://evil.example", "//evil.example", "/\\evil.example"]) {
      await signInWithPassword("dave", `/login?return_to=${encodeURIComponent(target)}`);
      await page.waitForURL(server.url("/"));
      assert.equal(page.url(), server.url("/"), `return_to=${target} lands on the dashboard`);
      await signOut();
    }
    await signInWithPassword("dave", `/login?return_to=${encodeURIComponent("/settings/security")}`);
    await page.waitForURL(server.url("/settings/security"));
    await signOut();

    // Through the second step too: the target rides along to /login/2fa and is checked again there.
    await signInWithPassword("alice", `/login?return_to=${encodeURIComponent("//evil.example/steal")}`);
    await page.waitForURL(/\/login\/2fa/);
    await page.getByRole("link", { name: "Use a recovery code" }).click();
    await page.getByLabel("Recovery code").fill(recoveryCodes[1]);
    await page.getByRole("button", { name: "Verify" }).click();
    await page.waitForURL(server.url("/"));
  });

  it("refuses form posts without the anti-forgery token", async () => {
    // Signed in as alice. A post with her cookies but no token changes nothing.
    const forged = await context.request.post(server.url("/settings/security/recovery-codes"), {
      form: { anything: "x" },
      maxRedirects: 0,
    });
    assert.equal(forged.status(), 403);
    assert.match(forged.headers()["content-security-policy"], /frame-ancestors 'none'/);
    const wrongToken = await context.request.post(server.url("/logout"), {
      form: { csrf_token: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" },
      maxRedirects: 0,
    });
    assert.equal(wrongToken.status(), 403);
    await page.goto(server.url("/settings/security"));
    await page.getByText("8 of 10").waitFor();

    // A form on another page (here about:blank, as an attacker's site would) posting to Twofold is refused.
    await page.setContent(
      `<form method="post" action="${server.url("/logout")}"><button>Win a prize</button></form>`,
    );
    await page.getByRole("button", { name: "Win a prize" }).click();
    await page.getByRole("heading", { name: "Form refused" }).waitFor();
    await screenshot(page, "forbidden");
    await page.goto(server.url("/"));
    assert.equal(page.url(), server.url("/"), "still signed in");
  });

  it("removes the authenticator app with a current code", async () => {
    await page.goto(server.url("/settings/security"));
    await page.getByLabel("Current code from the app").fill(await app.nextCode());
    await page.getByRole("button", { name: "Remove authenticator app" }).click();
    await page.waitForURL(/notice=totp_removed/);
    assert.equal(await page.locator(".badge.off").count(), 1);
    await screenshot(page, "security-removed");
    await signOut();
  });

  it("shows friendly pages for 404 and 429", async () => {
    const missing = await page.goto(server.url("/no/such/page"));
    assert.equal(missing.status(), 404);
    await page.getByRole("heading", { name: "Page not found" }).waitFor();
    await screenshot(page, "not-found");

    server.addUser("erin", PASSWORD);
    let response;
    for (let i = 0; i < 11; i += 1) {
      await page.goto(server.url("/login"));
      await page.getByLabel("Username").fill("erin");
      await page.getByLabel("Password").fill(`wrong password ${i}`);
      [response] = await Promise.all([
        page.waitForResponse((r) => r.url() === server.url("/login") && r.request().method() === "POST"),
        page.getByRole("button", { name: "Continue" }).click(),
      ]);
      if (response.status() === 429) break;
      assert.equal(response.status(), 401);
    }
    assert.equal(response.status(), 429);
    assert.ok(Number(response.headers()["retry-after"]) > 0);
    await page.getByRole("heading", { name: "Too many attempts" }).waitFor();
    await screenshot(page, "too-many-attempts");
  });

  it("is readable on a phone", async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    const small = await phone.newPage();
    await small.goto(server.url("/login"));
    await screenshot(small, "phone-login");
    await small.getByLabel("Username").fill("dave");
    await small.getByLabel("Password").fill(PASSWORD);
    await small.getByRole("button", { name: "Continue" }).click();
    await small.waitForURL(server.url("/"));
    await screenshot(small, "phone-dashboard");
    await small.goto(server.url("/settings/security"));
    await small.getByRole("button", { name: "Set up an authenticator app" }).click();
    await small.waitForURL(server.url("/settings/security/totp"));
    const overflow = await small.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    assert.equal(overflow, false, "nothing is wider than the screen");
    await screenshot(small, "phone-totp-setup");
    await phone.close();
  });
});
