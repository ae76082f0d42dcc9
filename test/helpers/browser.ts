/**
 * A real browser for tests: Debian's chromium (scripts/packages.txt), headless,
 * driven by playwright-core. Each page records what a person would not want
 * to see happen: console errors, uncaught exceptions, JavaScript dialogs
 * (alert/confirm/prompt), CSP violations, and every request it makes.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const chromiumInstalled = existsSync(CHROMIUM);

/** Where screenshots go: test-results/web under the repository. */
export const SCREENSHOTS = new URL('../../test-results/web/', import.meta.url).pathname;

export interface WatchedPage {
  page: Page;
  context: BrowserContext;
  consoleErrors: string[];
  pageErrors: string[];
  dialogs: string[];
  requests: Array<{ url: string; method: string; headers: Record<string, string> }>;
  /** CSP violations the page reported (securitypolicyviolation events). */
  cspViolations: () => Promise<string[]>;
  /** Clears what was recorded so far. */
  reset: () => void;
  screenshot: (name: string) => Promise<string>;
}

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      // Tests run as root, where Chromium's sandbox cannot start.
      '--no-sandbox',
      // Nothing but the daemon on 127.0.0.1: no other name or address is ever reached.
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
    ],
  });
}

export async function openPage(browser: Browser, viewport = { width: 1280, height: 800 }): Promise<WatchedPage> {
  const context = await browser.newContext({ viewport });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  const watched: WatchedPage = {
    page, context, consoleErrors: [], pageErrors: [], dialogs: [], requests: [],
    cspViolations: () => page.evaluate(() => (window as unknown as { cspViolations?: string[] }).cspViolations ?? []),
    reset: () => {
      watched.consoleErrors.length = 0;
      watched.pageErrors.length = 0;
      watched.dialogs.length = 0;
      watched.requests.length = 0;
    },
    screenshot: async (name) => {
      mkdirSync(SCREENSHOTS, { recursive: true });
      const path = join(SCREENSHOTS, `${name}.png`);
      await page.screenshot({ path });
      return path;
    },
  };
  // Evaluated by the browser outside the page's CSP, before any of the page's scripts.
  await page.addInitScript(() => {
    const seen: string[] = [];
    (window as unknown as { cspViolations: string[] }).cspViolations = seen;
    document.addEventListener('securitypolicyviolation', (event) => seen.push(`${event.violatedDirective} ${event.blockedURI}`));
  });
  page.on('console', (message) => {
    if (message.type() === 'error') watched.consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => watched.pageErrors.push(error.message));
  page.on('dialog', (dialog) => {
    watched.dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    void dialog.dismiss();
  });
  page.on('request', (request) => watched.requests.push({ url: request.url(), method: request.method(), headers: request.headers() }));
  return watched;
}
