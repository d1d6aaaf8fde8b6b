// Browser tests of what a person manages about their account, in headless Chromium against the real binary: the code
// that turned an authenticator app on, typed again at once to sign in (told apart, and no warning afterwards);
// ending a session signed in from another browser; changing the password, which signs that browser out too. Two
// browser contexts stand for two browsers.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Authenticator, launchBrowser, screenshot, startServer } from "./harness.js";

const PASSWORD = "correct horse battery staple";
const NEW_PASSWORD = "a brand new pass phrase";
const FIREFOX_ON_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";

describe("an account in a browser", () => {
  let server;
  let browser;

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  async function signIn(page, username, password) {
    await page.goto(server.url("/login"));
    await page.getByLabel("Username").fill(username);
    await page.getByLabel("Password").fill(password);
    await page.getByRole("button", { name: "Continue" }).click();
  }

  it("takes the code that turned the app on, typed again at once, as the person's own", async () => {
    server.addUser("uma", PASSWORD);
    const context = await browser.newContext({ viewport: { width: 1024, height: 768 } });
    const page = await context.newPage();
    await signIn(page, "uma", PASSWORD);
    await page.waitForURL(server.url("/"));
    await page.goto(server.url("/settings/security"));
    await page.getByRole("button", { name: "Set up an authenticator app" }).click();
    await page.waitForURL(server.url("/settings/security/totp"));
    const app = new Authenticator((await page.locator("#secret").innerText()).replace(/\s/g, ""));
    const code = await app.nextCode();
    await page.getByLabel("6-digit code").fill(code);
    await page.getByRole("button", { name: "Turn on" }).click();
    await page.getByRole("heading", { name: "Save your recovery codes" }).waitFor();
    await page.getByRole("link", { name: "I have saved them" }).click();
    await page.getByRole("button", { name: /^Sign out/ }).first().click();
    await page.waitForURL(/\/login\?notice=signed_out$/);

    // Signing in again straight away: the app still shows the code that turned it on.
    await signIn(page, "uma", PASSWORD);
    await page.waitForURL(/\/login\/2fa/);
    await page.getByLabel("Code from your authenticator app").fill(code);
    await page.getByRole("button", { name: "Verify" }).click();
    await page.getByText("This code was already used: wait for your app to show the next one").waitFor();
    assert.equal(await page.getByText("tries left").count(), 0, "no try was used");
    await screenshot(page, "second-step-code-already-used");
    await page.getByLabel("Code from your authenticator app").fill(await app.nextCode());
    await page.getByRole("button", { name: "Verify" }).click();
    await page.waitForURL(server.url("/"));
    await page.getByRole("heading", { name: "Hello, uma" }).waitFor();
    assert.equal(await page.locator(".warning").count(), 0, "no warning about someone else's code");
    await screenshot(page, "dashboard-after-own-code");
    await context.close();
  });

  it("ends a session of another browser, then changes the password, which signs it out too", async () => {
    server.addUser("vera", PASSWORD);
    const laptop = await browser.newContext({ viewport: { width: 1024, height: 900 } });
    const other = await browser.newContext({ userAgent: FIREFOX_ON_LINUX });
    const here = await laptop.newPage();
    const there = await other.newPage();
    await signIn(there, "vera", PASSWORD);
    await there.waitForURL(server.url("/"));
    await signIn(here, "vera", PASSWORD);
    await here.waitForURL(server.url("/"));

    await here.goto(server.url("/settings/security"));
    const list = here.locator("ul.sessions");
    await list.getByText("Firefox on Linux").waitFor();
    assert.equal(await list.getByText("(this browser)").count(), 1);
    await screenshot(here, "security-sessions");
    await list.getByRole("button", { name: "End this session" }).click();
    await here.getByText("That session was signed out.").waitFor();
    assert.equal(await here.locator("ul.sessions li").count(), 1);
    await there.reload();
    await there.waitForURL(/\/login/);

    // Signed in there again, then the password changes here.
    await signIn(there, "vera", PASSWORD);
    await there.waitForURL(server.url("/"));
    await here.goto(server.url("/settings/security"));
    await here.getByLabel("Current password").fill(PASSWORD);
    await here.getByLabel("New password", { exact: true }).fill(NEW_PASSWORD);
    await here.getByLabel("New password again").fill("not the same at all");
    await here.getByRole("button", { name: "Change password" }).click();
    await here.getByText("The two new passwords differ").waitFor();
    await here.getByLabel("Current password").fill(PASSWORD);
    await here.getByLabel("New password", { exact: true }).fill(NEW_PASSWORD);
    await here.getByLabel("New password again").fill(NEW_PASSWORD);
    await screenshot(here, "security-change-password");
    await here.getByRole("button", { name: "Change password" }).click();
    await here.waitForURL(server.url("/?notice=password_changed"));
    await here.getByText("Your password was changed.").waitFor();
    await screenshot(here, "dashboard-password-changed");

    await there.reload();
    await there.waitForURL(/\/login/);
    await signIn(there, "vera", PASSWORD);
    await there.getByText("The username or password is wrong").waitFor();
    await signIn(there, "vera", NEW_PASSWORD);
    await there.waitForURL(server.url("/"));
    await laptop.close();
    await other.close();
  });
});
