// End-to-end tests of text-message codes in the pages, in headless Chromium against the real binary with a stand-in
// SMS gateway (an HTTP server in this process that keeps the messages): adding a phone on the security page with the
// code the stand-in received, signing in with a code by text message (the resend countdown included), and a gateway
// outage on the second step, after which a recovery code still finishes the sign-in. Screenshots go to
// e2e/screenshots like the other pages'.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { launchBrowser, screenshot, startServer, startSmsGateway } from "./harness.js";

const PASSWORD = "correct horse battery staple";
// Not the number in the pages' example (+15551234567), so a page showing it would be caught.
const PHONE = "+447700900123";
const MASKED = "+4•••••23";
const TESS_PHONE = "+447700900456";
// The send limits allow one code per 30 s; the countdown can take that long, plus a margin.
const RESEND_WAIT = 40_000;

describe("Text-message codes in a browser", () => {
  let gateway;
  let server;
  let browser;
  let context;
  let page;
  let recoveryCodes = [];
  let tessRecoveryCodes = [];

  before(async () => {
    gateway = await startSmsGateway();
    server = await startServer({
      env: {
        TWOFOLD_SMS__GATEWAY: "http",
        TWOFOLD_SMS__URL: gateway.url,
        TWOFOLD_SMS__TIMEOUT: "500ms",
      },
    });
    // A second account with a phone, enrolled through the JSON API now, so that its send limit is long over when the
    // outage test asks for a code. A number of its own: texts to one number are limited across all accounts.
    server.addUser("tess", PASSWORD);
    tessRecoveryCodes = await enrollPhoneByApi("tess", TESS_PHONE);
    browser = await launchBrowser();
    context = await browser.newContext({ viewport: { width: 1024, height: 768 } });
    page = await context.newPage();
  });

  /** Signs `username` in with the password alone, adds `phone` with the code the stand-in got; the recovery codes. */
  async function enrollPhoneByApi(username, phone) {
    const api = async (path, body, cookie) => {
      const response = await fetch(server.url(path), {
        method: "POST",
        headers: { "content-type": "application/json", ...(cookie ? { cookie } : {}) },
        body: JSON.stringify(body),
      });
      assert.ok(response.ok, `${path}: ${response.status} ${await response.clone().text()}`);
      return response;
    };
    const login = await api("/auth/login", { username, password: PASSWORD });
    const cookie = login.headers.get("set-cookie").split(";")[0];
    await api("/auth/2fa/sms/setup", { phone }, cookie);
    const confirmed = await api("/auth/2fa/sms/confirm", { code: gateway.lastCode(phone) }, cookie);
    return (await confirmed.json()).recovery_codes;
  }

  after(async () => {
    await browser?.close();
    await server?.stop();
    await gateway?.stop();
  });

  async function signInWithPassword(username) {
    await page.goto(server.url("/login"));
    await page.getByLabel("Username").fill(username);
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Continue" }).click();
  }

  async function signOut() {
    await page.getByRole("button", { name: /^Sign out/ }).first().click();
    await page.waitForURL(/\/login\?notice=signed_out$/);
  }

  /** No page shows the whole number, however written. */
  async function assertMasked() {
    const html = await page.content();
    assert.ok(html.includes(MASKED), "the masked number is shown");
    for (const whole of [PHONE, PHONE.slice(1), "7700900123"]) {
      assert.ok(!html.includes(whole), `${whole} is not on the page`);
    }
  }

  /** Waits for the countdown to enable the button, which it keeps disabled until then. */
  async function waitForResend(button) {
    await page.waitForFunction((element) => !element.disabled, await button.elementHandle(), {
      timeout: RESEND_WAIT,
    });
  }

  it("adds a phone on the security page with the code the gateway got", async () => {
    server.addUser("sam", PASSWORD);
    const sentBefore = gateway.messages.length;
    await signInWithPassword("sam");
    await page.waitForURL(server.url("/"));
    await page.getByRole("link", { name: "Security settings" }).click();
    await page.getByRole("heading", { name: "Text message (SMS)" }).waitFor();
    const phone = page.getByLabel("Mobile phone number");
    assert.equal(await phone.getAttribute("type"), "tel");
    assert.equal(await phone.getAttribute("autocomplete"), "tel");
    const describedBy = (await phone.getAttribute("aria-describedby")).split(" ");
    const descriptions = await Promise.all(describedBy.map((id) => page.locator(`#${id}`).innerText()));
    assert.match(descriptions.join(" "), /international form/);
    assert.match(descriptions.join(" "), /NIST/);
    await screenshot(page, "sms-security-off");

    await phone.fill("555 123 4567");
    await page.getByRole("button", { name: "Send a code" }).click();
    const problem = page.locator("#phone-error");
    await problem.waitFor();
    assert.match(await problem.innerText(), /international form/);
    assert.equal(await page.getByLabel("Mobile phone number").getAttribute("aria-invalid"), "true");
    assert.equal(await page.getByLabel("Mobile phone number").inputValue(), "", "the number is not written back");
    assert.equal(gateway.messages.length, sentBefore, "nothing was sent");
    await screenshot(page, "sms-security-invalid-phone");

    await page.getByLabel("Mobile phone number").fill(PHONE);
    await page.getByRole("button", { name: "Send a code" }).click();
    await page.waitForURL(server.url("/settings/security/sms"));
    assert.equal(gateway.messages.length, sentBefore + 1);
    assert.equal(gateway.messages.at(-1).to, PHONE);
    await page.getByText(`We sent a code to ${MASKED}`).waitFor();
    await assertMasked();
    // The countdown: the button is disabled and the hint counts down from 30 seconds.
    const resend = page.getByRole("button", { name: "Send a new code" });
    assert.equal(await resend.isDisabled(), true);
    assert.match(await page.locator("#resend-hint").innerText(), /You can ask for a new code in (30|29|28) seconds/);
    await screenshot(page, "sms-confirm");

    await page.getByLabel("Code from the text message").fill(gateway.lastCode(PHONE));
    await page.getByRole("button", { name: "Turn on text-message codes" }).click();
    await page.getByRole("heading", { name: "Save your recovery codes" }).waitFor();
    await page.getByText("Text-message codes are on.").waitFor();
    recoveryCodes = (await page.locator("#recovery-codes").innerText()).trim().split(/\s+/);
    assert.equal(recoveryCodes.length, 10);
    await screenshot(page, "sms-recovery-codes");

    await page.getByRole("link", { name: "I have saved them" }).click();
    await page.waitForURL(server.url("/settings/security"));
    await page.getByText(`you can ask for a code by text message to ${MASKED}`).waitFor();
    await assertMasked();
    await page.getByText("10 of 10").waitFor();
    await screenshot(page, "sms-security-on");
    await signOut();
  });

  it("signs in with a code by text message, sent when the countdown allows", async () => {
    await signInWithPassword("sam");
    await page.waitForURL(server.url("/login/2fa"));
    await page.getByRole("heading", { name: "Get a code by text message" }).waitFor();
    await assertMasked();
    assert.equal(await page.getByLabel("Code from the text message").count(), 0, "no code field before a send");
    // The enrolment's code went out moments ago: the send limit holds this one back, and the page says so.
    const send = page.getByRole("button", { name: "Send a code" });
    if (await send.isDisabled()) {
      assert.match(await page.locator("#resend-hint").innerText(), /You can ask for one in \d+ seconds/);
      await screenshot(page, "sms-second-step-wait");
      await waitForResend(send);
      assert.match(await page.locator("#resend-hint").innerText(), /You can ask for a code now/);
    }
    await screenshot(page, "sms-second-step-send");
    const sent = gateway.messages.length;
    await send.click();
    await page.waitForURL(server.url("/login/2fa?method=sms"));
    assert.equal(gateway.messages.length, sent + 1);
    await page.getByText(`We sent a code to ${MASKED}`).waitFor();
    const code = page.getByLabel("Code from the text message");
    assert.equal(await code.getAttribute("autocomplete"), "one-time-code");
    assert.equal(await code.getAttribute("inputmode"), "numeric");
    assert.equal(await page.evaluate(() => document.activeElement?.id), "code", "the code field has the focus");
    const resend = page.getByRole("button", { name: "Send a new code" });
    assert.equal(await resend.isDisabled(), true);
    const first = await page.locator("#resend-hint").innerText();
    assert.match(first, /You can ask for a new code in \d+ seconds/);
    await screenshot(page, "sms-second-step-code");
    // It counts down (its end, enabling the button, was seen above on "Send a code").
    await page.waitForFunction(
      (before) => document.querySelector("#resend-hint").innerText !== before,
      first,
      { timeout: 5_000 },
    );

    await page.getByLabel("Code from the text message").fill(gateway.lastCode(PHONE));
    await page.getByRole("button", { name: "Verify" }).click();
    await page.waitForURL(server.url("/"));
    assert.match(await page.locator(".facts").innerText(), /Text message \(SMS\)/);
    await screenshot(page, "sms-dashboard");
    await signOut();
  });

  it("explains a gateway outage on the second step, where a recovery code still works", async () => {
    await gateway.stop();
    await signInWithPassword("tess");
    await page.waitForURL(server.url("/login/2fa"));
    const send = page.getByRole("button", { name: "Send a code" });
    await waitForResend(send);
    await send.click();
    const alert = page.getByRole("alert");
    await alert.waitFor();
    assert.match(await alert.innerText(), /could not be sent just now/);
    assert.equal(new URL(page.url()).pathname, "/login/2fa/sms");
    await screenshot(page, "sms-gateway-down");

    await page.getByRole("link", { name: "Use a recovery code" }).click();
    await page.getByLabel("Recovery code").fill(tessRecoveryCodes[0]);
    await page.getByRole("button", { name: "Verify" }).click();
    await page.waitForURL(server.url("/"));
    assert.match(await page.locator(".facts").innerText(), /Recovery code/);
  });

  it("is readable on a phone", async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    const small = await phone.newPage();
    await small.goto(server.url("/login"));
    await small.getByLabel("Username").fill("sam");
    await small.getByLabel("Password").fill(PASSWORD);
    await small.getByRole("button", { name: "Continue" }).click();
    await small.waitForURL(server.url("/login/2fa"));
    const overflow = await small.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    assert.equal(overflow, false, "nothing is wider than the screen");
    await screenshot(small, "sms-phone-second-step");
    await phone.close();
  });
});
