// Test harness for the browser tests: starts the real `twofold serve` binary on a free loopback port with its own
// temporary database, adds users through `twofold user add` (and runs other commands on its database), stands in for
// an SMS gateway, launches Debian's headless Chromium through playwright-core, and computes TOTP codes (RFC 6238) the
// way an authenticator app does.
import { spawn, spawnSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const binary = process.env.TWOFOLD_BIN ?? resolve(here, "../target/debug/twofold");
export const screenshots = join(here, "screenshots");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";

async function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/**
 * A running `twofold serve` with registration on, in a fresh temporary folder. `env` adds or overrides environment
 * variables (configuration such as `TWOFOLD_SMS__GATEWAY`).
 */
export async function startServer({ env: extraEnv = {} } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "twofold-e2e-"));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = {
    ...process.env,
    TWOFOLD_DATABASE_URL: `sqlite://${join(dir, "twofold.db")}`,
    TWOFOLD_LISTEN: `127.0.0.1:${port}`,
    TWOFOLD_PUBLIC_URL: base,
    TWOFOLD_ALLOW_REGISTRATION: "true",
    TWOFOLD_LOG: "warn",
    ...extraEnv,
  };
  const logs = [];
  const child = spawn(binary, ["serve"], { env, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.on("data", (chunk) => logs.push(chunk.toString()));
  child.stderr.on("data", (chunk) => logs.push(chunk.toString()));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`twofold serve exited with ${child.exitCode}:\n${logs.join("")}`);
    }
    try {
      const response = await fetch(`${base}/static/style.css`);
      if (response.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill();
      throw new Error(`twofold serve did not start within 20 s:\n${logs.join("")}`);
    }
    await new Promise((wake) => setTimeout(wake, 100));
  }
  /** Runs `twofold ARGS…` against this server's database and key; returns what it printed. */
  const run = (args, input = "") => {
    const result = spawnSync(binary, args, { env, input, encoding: "utf8" });
    if (result.status !== 0) {
      throw new Error(`twofold ${args.join(" ")} failed: ${result.stderr}`);
    }
    return result.stdout;
  };
  return {
    base,
    url: (path) => `${base}${path}`,
    logs,
    run,
    addUser(name, password) {
      run(["user", "add", name, "--password-stdin"], `${password}\n`);
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((done) => child.once("exit", done));
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A stand-in SMS gateway of the `http` kind on a free loopback port: it accepts every `POST /sms` and keeps the JSON
 * bodies (`{"to", "message"}`) it received. After `stop()` nothing listens there, as when a real gateway is down.
 */
export async function startSmsGateway() {
  const messages = [];
  const server = createHttpServer((request, response) => {
    let body = "";
    request.setEncoding("utf8");
    request.on("data", (chunk) => {
      body += chunk;
    });
    request.on("end", () => {
      if (request.method !== "POST" || request.url !== "/sms") {
        response.writeHead(404).end();
        return;
      }
      try {
        messages.push(JSON.parse(body));
        response.writeHead(200, { "content-type": "application/json" }).end("{}");
      } catch {
        response.writeHead(400).end();
      }
    });
  });
  await new Promise((listening) => server.listen(0, "127.0.0.1", listening));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/sms`,
    messages,
    /** The 6-digit code in the newest message, after checking that it went to `to`. */
    lastCode(to) {
      const last = messages.at(-1);
      if (!last) throw new Error("the stand-in gateway received no message");
      if (last.to !== to) throw new Error(`the last message went to ${last.to}, not ${to}`);
      const code = /\b(\d{6})\b/.exec(last.message)?.[1];
      if (!code) throw new Error(`no 6-digit code in ${JSON.stringify(last.message)}`);
      return code;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise((closed) => server.close(closed));
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: chromiumPath,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
  });
}

let shots = 0;
/** Saves a full-page screenshot as screenshots/NN-name.png, numbered in the order taken. */
export async function screenshot(page, name) {
  mkdirSync(screenshots, { recursive: true });
  shots += 1;
  await page.screenshot({ path: join(screenshots, `${String(shots).padStart(2, "0")}-${name}.png`), fullPage: true });
}

function base32Decode(text) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  const out = [];
  for (const char of text.replace(/[\s=-]/g, "").toUpperCase()) {
    const index = alphabet.indexOf(char);
    if (index < 0) throw new Error(`not base32: ${char}`);
    value = (value << 5) | index;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

const PERIOD = 30;

export function currentStep() {
  return Math.floor(Date.now() / 1000 / PERIOD);
}

/** RFC 6238 TOTP for time step `step`: HMAC-SHA1, dynamic truncation, 6 digits. */
export function totpAt(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac("sha1", base32Decode(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const number = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(number).padStart(6, "0");
}

/**
 * An authenticator app for one secret that never offers the server a step it has already accepted. The server
 * accepts steps t-1, t and t+1 and then only later ones, so the next code is the one for the step after the last
 * used (at most t+1); only when that is still too far ahead does it wait for the clock.
 */
export class Authenticator {
  constructor(secret) {
    this.secret = secret;
    this.lastStep = -1;
  }

  async nextCode() {
    let step = Math.max(currentStep(), this.lastStep + 1);
    while (step > currentStep() + 1) {
      await new Promise((wake) => setTimeout(wake, 1000));
    }
    this.lastStep = step;
    return totpAt(this.secret, step);
  }

  /** A 6-digit code that is none of the codes the server would accept now. */
  wrongCode() {
    const now = currentStep();
    const valid = new Set([-1, 0, 1, 2].map((d) => totpAt(this.secret, now + d)));
    for (let n = 123456; ; n = (n + 111111) % 1_000_000) {
      const code = String(n).padStart(6, "0");
      if (!valid.has(code)) return code;
    }
  }
}

export function readText(path) {
  return readFileSync(path, "utf8");
}
