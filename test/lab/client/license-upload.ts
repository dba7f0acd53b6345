// Runs on the lab's client host: an administrator uploads a license file on the admin page, in
// Chromium, through TARGET (the VIP): log in, System settings, choose the file, Upload, check the
// preview, Apply. Prints one JSON line: {"state": …, "text": …} of the page's license state.
import { chromium } from 'playwright-core';

const target = process.env.TARGET ?? '';
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-dev-shm-usage'],
});
try {
  const page = await browser.newPage();
  await page.goto(`${target}/admin/settings`);
  await page.fill('#username', process.env.LOGIN_USER ?? '');
  await page.fill('#password', process.env.LOGIN_PASSWORD ?? '');
  await Promise.all([page.waitForURL(/\/admin\/settings$/), page.click('button[type=submit].primary')]);
  const before = await page.getAttribute('#license-state', 'data-state');
  await page.setInputFiles('#license-file', process.env.LICENSE_FILE ?? '');
  await Promise.all([page.waitForURL(/\/admin\/settings\/license\/upload$/), page.click('#license-upload-button')]);
  const customer = await page.textContent('#license-preview [data-field=customer]');
  await Promise.all([page.waitForURL(/\/admin\/settings\?applied=1$/), page.click('#license-apply-button')]);
  process.stdout.write(
    `${JSON.stringify({ before, customer, state: await page.getAttribute('#license-state', 'data-state'), text: await page.textContent('#license-state') })}\n`,
  );
} finally {
  await browser.close();
}
