#!/usr/bin/env python3
"""Browser test of the chat page that `nanochat serve` serves at GET /.

Drives Debian's headless chromium through chromium-driver (selenium, pinned in manifests/python/test.lock)
against an already running server, and checks what a person would see: the page and its logo load, a reply
streams into the transcript, clicking a reply regenerates it, a request the server rejects (a message over
8,000 characters) shows the server's own error message and leaves the conversation usable, the slash commands
work, /clear empties the transcript, and the page fits a phone-sized viewport.

    python tests/serve/ui_chromium.py --url http://127.0.0.1:PORT --screenshot OUT.png

Prints one line per check ("ok - ..." or "FAIL - ..."), exits 0 only when all pass. Nothing is downloaded:
the driver and browser paths are passed explicitly, so selenium-manager never runs. Every wait is bounded.
"""

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

# Recorded by the page instrumentation: every POST the page sends, and the assistant bubble's text length at
# each change while a reply streams (a MutationObserver sees every token append, however fast they arrive).
INSTRUMENT_JS = r"""
if (!window.__uiTest) {
  window.__uiTest = { sent: [], lens: [], sendEnabledWhileStreaming: 0 };
  const realFetch = window.fetch;
  window.fetch = function (url, opts) {
    if (opts && String(opts.method || '').toUpperCase() === 'POST') {
      window.__uiTest.sent.push({ url: new URL(String(url), location.href).href, body: String(opts.body) });
    }
    return realFetch.apply(this, arguments);
  };
  new MutationObserver((records) => {
    for (const r of records) {
      const node = r.target.nodeType === Node.TEXT_NODE ? r.target.parentElement : r.target;
      const msg = node && node.closest ? node.closest('.message.assistant') : null;
      if (!msg) continue;
      if (r.type === 'characterData' && r.oldValue) window.__uiTest.lens.push(r.oldValue.length);
      window.__uiTest.lens.push(msg.textContent.length);
      if (msg.dataset.state === 'streaming' && !document.getElementById('send').disabled) {
        window.__uiTest.sendEnabledWhileStreaming += 1;
      }
    }
  }).observe(document.getElementById('messages'),
             { subtree: true, childList: true, characterData: true, characterDataOldValue: true });
}
"""

TRANSCRIPT_JS = r"""
return Array.from(document.querySelectorAll('#messages .message')).map((el) => ({
  cls: el.className, state: el.dataset.state || null, text: el.textContent,
}));
"""


class CheckFailed(Exception):
    pass


class Runner:
    def __init__(self, args):
        self.args = args
        self.base = args.url.rstrip("/")
        self.failed = False
        self.driver = None
        self.profile = tempfile.mkdtemp(prefix="nanochat-ui-test-")

    # --- browser ---------------------------------------------------------------------------

    def start(self):
        opts = webdriver.ChromeOptions()
        opts.binary_location = self.args.chromium
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--window-size={self.args.width},{self.args.height}",
            f"--user-data-dir={self.profile}",
        ):
            opts.add_argument(flag)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=self.args.chromedriver, log_output=os.devnull)
        self.driver = webdriver.Chrome(service=service, options=opts)
        self.driver.set_page_load_timeout(self.args.timeout)
        self.driver.set_script_timeout(self.args.timeout)

    def stop(self):
        if self.driver is not None:
            try:
                self.driver.quit()
            except Exception:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def transcript(self):
        return self.js(TRANSCRIPT_JS)

    def by_kind(self, kind):
        return [m for m in self.transcript() if kind in m["cls"].split()]

    def sent(self):
        return self.js("return window.__uiTest.sent.map((s) => ({url: s.url, body: JSON.parse(s.body)}));")

    def alert_text(self):
        try:
            return self.driver.switch_to.alert.text or "(empty prompt)"
        except WebDriverException:
            return None

    def wait_for(self, what, cond, timeout=None):
        """Polls cond() until it returns a truthy value; CheckFailed after `timeout` seconds."""
        deadline = time.monotonic() + (timeout or self.args.timeout)
        last = None
        while True:
            try:
                last = cond()
            except WebDriverException as e:
                last = None
                err = e
            else:
                err = None
                if last:
                    return last
            if time.monotonic() > deadline:
                raise CheckFailed(f"timed out after {timeout or self.args.timeout}s waiting for {what}"
                                  + (f" ({err.msg})" if err else ""))
            time.sleep(0.05)

    def describe(self):
        try:
            lines = []
            for m in self.transcript():
                text = m["text"]
                shown = text if len(text) <= 160 else text[:120] + f"... ({len(text)} chars)"
                lines.append(f"    [{m['cls']}{' state=' + m['state'] if m['state'] else ''}] {shown!r}")
            send = self.js("const b = document.getElementById('send'); return b ? !b.disabled : null;")
            typed = self.js("const i = document.getElementById('input'); return i ? i.value.length : null;")
            lines.append(f"    send enabled: {send}; input value length: {typed}")
            return "\n".join(lines) if lines else "    (transcript empty)"
        except Exception as e:  # the browser itself may be gone
            return f"    (could not read the page: {e})"

    # --- helpers for the checks ------------------------------------------------------------

    def type_and_enter(self, text):
        box = self.driver.find_element(By.ID, "input")
        box.clear()
        box.send_keys(text)
        box.send_keys(Keys.ENTER)

    def wait_reply_done(self, old_marker=None):
        """Waits for the newest assistant bubble (not marked old) to leave the streaming state."""
        def newest():
            return self.js(
                "const a = Array.from(document.querySelectorAll('#messages .message.assistant'))"
                "  .filter((el) => !el.dataset.testOld);"
                "if (!a.length) return null; const el = a[a.length - 1];"
                "return {state: el.dataset.state || null, text: el.textContent};")

        self.wait_for("an assistant bubble", newest)
        reply = self.wait_for("the reply to finish (data-state leaving 'streaming')",
                              lambda: (lambda r: r if r and r["state"] != "streaming" else None)(newest()))
        if reply["state"] != "done":
            raise CheckFailed(f"reply ended with data-state={reply['state']!r}, expected 'done'")
        if not reply["text"].strip():
            raise CheckFailed("the reply finished with no text")
        return reply

    def growth_summary(self):
        lens = [n for n in self.js("return window.__uiTest.lens;") if n > 0]
        distinct = sorted(set(lens))
        return distinct

    def post_direct(self, body):
        headers = {"Content-Type": "application/json"}
        if self.args.api_key:
            headers["Authorization"] = "Bearer " + self.args.api_key
        req = urllib.request.Request(self.base + "/chat/completions", data=json.dumps(body).encode(),
                                     headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.args.timeout) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    # --- the checks ------------------------------------------------------------------------

    def check_load(self):
        self.driver.get(self.base + "/")
        if self.args.api_key:  # the page's first API call is refused (401) and it asks for the key once
            self.wait_for("the page to ask for the API key", lambda: self.alert_text())
            alert = self.driver.switch_to.alert
            if "API key" not in alert.text:
                raise CheckFailed(f"the page asked {alert.text!r}")
            alert.send_keys(self.args.api_key)
            alert.accept()
            self.wait_for("the model name, fetched with the key", lambda: self.js(
                "return document.getElementById('model').textContent;"))
        self.wait_for("#input", lambda: self.driver.find_elements(By.ID, "input"))
        for el_id in ("send", "messages", "temperature", "top-k", "max-tokens"):
            if not self.driver.find_elements(By.ID, el_id):
                raise CheckFailed(f"#{el_id} missing")
        title = self.driver.title
        if "nanochat" not in title.lower():
            raise CheckFailed(f"title is {title!r}")
        logo_url = self.base + "/logo.svg"
        srcs = self.js("return Array.from(document.querySelectorAll('img')).map((i) => i.src);")
        if logo_url not in srcs:
            raise CheckFailed(f"no <img> references {logo_url}; img srcs: {srcs}")
        self.wait_for("the logo to render", lambda: self.js(
            "return Array.from(document.images).some((i) => i.src === arguments[0] && i.complete"
            " && i.naturalWidth > 0);", logo_url))
        with urllib.request.urlopen(logo_url, timeout=self.args.timeout) as resp:
            ctype = resp.headers.get("Content-Type", "")
            body = resp.read()
        if "svg" not in ctype or b"<svg" not in body:
            raise CheckFailed(f"/logo.svg answered Content-Type {ctype!r}, {len(body)} bytes")
        defaults = self.js("return ['temperature', 'top-k', 'max-tokens']"
                           ".map((id) => Number(document.getElementById(id).value));")
        if defaults != [0.8, 50, 512]:
            raise CheckFailed(f"settings defaults are {defaults}, expected [0.8, 50, 512]")
        if self.args.max_tokens is not None:  # a shorter reply keeps the run short on a slow server
            box = self.driver.find_element(By.ID, "max-tokens")
            box.clear()
            box.send_keys(str(self.args.max_tokens))
        self.js(INSTRUMENT_JS)
        return f"title {title!r}, logo {ctype}, {len(body)} bytes, settings defaults 0.8/50/512"

    def check_send(self):
        self.js("window.__uiTest.lens = [];")
        self.type_and_enter("Hello there")
        self.wait_for("the user bubble", lambda: [m for m in self.by_kind("user") if m["text"] == "Hello there"])
        reply = self.wait_reply_done()
        users, replies = self.by_kind("user"), self.by_kind("assistant")
        if len(users) != 1 or len(replies) != 1:
            raise CheckFailed(f"{len(users)} user and {len(replies)} assistant bubbles, expected 1 and 1")
        distinct = self.growth_summary()
        if not distinct:
            raise CheckFailed("the reply's text was never seen growing")
        if self.js("return window.__uiTest.sendEnabledWhileStreaming;"):
            raise CheckFailed("#send was enabled while the reply was streaming")
        sent = self.sent()
        if len(sent) != 1:
            raise CheckFailed(f"{len(sent)} POSTs sent, expected 1: {sent}")
        body = sent[0]["body"]
        expected = {"messages": [{"role": "user", "content": "Hello there"}],
                    "temperature": 0.8, "top_k": 50,
                    "max_tokens": 512 if self.args.max_tokens is None else self.args.max_tokens}
        if sent[0]["url"] != self.base + "/chat/completions" or body != expected:
            raise CheckFailed(f"request {sent[0]['url']} {body}, expected {expected}")
        how = (f"text grew through {len(distinct)} lengths" if len(distinct) >= 2
               else "a single-piece reply streamed")
        return f"{how}, {len(reply['text'])} chars, data-state=done"

    def check_regenerate(self):
        before = len(self.sent())
        self.js("window.__uiTest.lens = [];"
                "document.querySelectorAll('#messages .message.assistant')"
                ".forEach((el) => { el.dataset.testOld = '1'; });")
        self.driver.find_element(By.CSS_SELECTOR, "#messages .message.assistant").click()
        self.wait_for("the regenerate request", lambda: len(self.sent()) > before)
        reply = self.wait_reply_done()
        users, replies = self.by_kind("user"), self.by_kind("assistant")
        if len(users) != 1 or len(replies) != 1:
            raise CheckFailed(f"{len(users)} user and {len(replies)} assistant bubbles, expected 1 and 1")
        if self.js("return document.querySelectorAll('#messages .message.assistant[data-test-old]').length;"):
            raise CheckFailed("the old reply is still shown")
        body = self.sent()[-1]["body"]
        if body["messages"] != [{"role": "user", "content": "Hello there"}]:
            raise CheckFailed(f"regenerate sent {body['messages']}, expected only the user message")
        return f"new reply streamed ({len(reply['text'])} chars); 1 user + 1 assistant bubble"

    def check_server_error(self):
        before = len(self.sent())
        replies_before = len(self.by_kind("assistant"))
        self.js("const i = document.getElementById('input'); i.value = 'a'.repeat(8001);"
                "i.dispatchEvent(new Event('input', {bubbles: true}));")
        self.driver.find_element(By.ID, "send").click()
        errors = self.wait_for("an error bubble", lambda: [m for m in self.by_kind("error") if m["text"].strip()])
        shown = errors[-1]["text"]
        sent = self.sent()
        if len(sent) != before + 1:
            raise CheckFailed(f"{len(sent) - before} requests sent for the long message, expected 1")
        long_body = sent[-1]["body"]
        if len(long_body["messages"][-1]["content"]) != 8001:
            raise CheckFailed("the page did not send the 8,001-character message as typed")
        # The same request sent directly: the server's own message must be what the page shows.
        status, text = self.post_direct(long_body)
        if status != 400:
            raise CheckFailed(f"the server answered {status} to the long message, expected 400: {text[:300]}")
        try:
            detail = json.loads(text).get("detail") or json.loads(text)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            raise CheckFailed(f"the server's 400 body is not the documented JSON: {text[:300]}")
        if detail not in shown:
            raise CheckFailed(f"error bubble {shown!r} does not contain the server's message {detail!r}")
        if "content" not in shown:
            raise CheckFailed(f"error bubble {shown!r} does not mention the content field")
        if len(self.by_kind("assistant")) != replies_before:
            raise CheckFailed("the failed request left an assistant bubble behind")
        self.wait_for("#send to be enabled again",
                      lambda: self.js("return !document.getElementById('send').disabled;"), timeout=10)

        # The conversation is still usable: a normal message gets a reply, and the rejected one is not resent.
        self.js("window.__uiTest.lens = [];")
        self.type_and_enter("Thanks, and now?")
        self.wait_for("the next request", lambda: len(self.sent()) == before + 2)
        reply = self.wait_reply_done()
        msgs = self.sent()[-1]["body"]["messages"]
        roles = [m["role"] for m in msgs]
        if roles != ["user", "assistant", "user"] or msgs[0]["content"] != "Hello there" \
                or msgs[-1]["content"] != "Thanks, and now?":
            raise CheckFailed(f"follow-up sent {[(m['role'], m['content'][:40]) for m in msgs]}, "
                              "expected [user 'Hello there', assistant, user 'Thanks, and now?']")
        if not self.by_kind("error"):
            raise CheckFailed("the error bubble disappeared")
        return f"error bubble shows the server's message {detail!r}; next message answered ({len(reply['text'])} chars)"

    def check_commands(self):
        before = len(self.sent())
        notes_before = len(self.by_kind("note"))
        self.type_and_enter("/help")
        notes = self.wait_for("the /help note", lambda: (lambda n: n if len(n) > notes_before else None)(
            self.by_kind("note")))
        if "/temperature" not in notes[-1]["text"] or "/clear" not in notes[-1]["text"]:
            raise CheckFailed(f"/help note is {notes[-1]['text']!r}")
        self.type_and_enter("/temperature 0.5")
        self.wait_for("/temperature to set #temperature",
                      lambda: self.js("return Number(document.getElementById('temperature').value) === 0.5;"),
                      timeout=10)
        self.type_and_enter("/topk")
        self.wait_for("the /topk note", lambda: any("top-k" in n["text"].lower() and "50" in n["text"] for n in self.by_kind("note")[notes_before + 1:]),
                      timeout=10)
        if len(self.sent()) != before:
            raise CheckFailed("a slash command was sent to the server")
        return "/help, /temperature 0.5, /topk answered as notes; nothing sent"

    def check_clear(self):
        before = len(self.sent())
        self.type_and_enter("/clear")
        self.wait_for("an empty transcript", lambda: not self.transcript(), timeout=10)
        if len(self.sent()) != before:
            raise CheckFailed("/clear sent a request")
        return "transcript empty"

    def check_mobile(self):
        self.driver.set_window_size(390, 844)
        fit = self.wait_for("the layout to settle", lambda: self.js(
            "const w = window.innerWidth; if (w > 500) return null;"
            "const r = (id) => document.getElementById(id).getBoundingClientRect();"
            "const ok = (b) => b.width > 0 && b.left >= 0 && b.right <= w + 1 && b.bottom <= window.innerHeight + 1;"
            "return {w, scroll: document.documentElement.scrollWidth, input: ok(r('input')), send: ok(r('send'))};"),
            timeout=10)
        if not (fit["input"] and fit["send"]) or fit["scroll"] > fit["w"] + 1:
            raise CheckFailed(f"at 390x844 the page does not fit: {fit}")
        self.type_and_enter("Hi from a phone")
        self.wait_reply_done()
        stem, ext = os.path.splitext(self.args.screenshot)
        self.driver.save_screenshot(f"{stem}-mobile{ext or '.png'}")
        return f"input and send visible, no horizontal scroll at width {fit['w']}; {stem}-mobile{ext or '.png'}"

    # --- driver ----------------------------------------------------------------------------

    def run_check(self, name, fn):
        started = time.monotonic()
        try:
            detail = fn()
        except Exception as e:  # CheckFailed, or selenium/urllib errors
            msg = str(e) if isinstance(e, CheckFailed) else f"{type(e).__name__}: {e}"
            print(f"FAIL - {name}: {msg}\n  seen:\n{self.describe()}", flush=True)
            self.failed = True
            return False
        print(f"ok - {name} ({time.monotonic() - started:.1f}s): {detail}", flush=True)
        return True

    def screenshot(self):
        if self.driver is None:
            return
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.args.screenshot)), exist_ok=True)
            self.driver.save_screenshot(self.args.screenshot)
            print(f"screenshot: {self.args.screenshot}", flush=True)
        except Exception as e:
            print(f"could not save the screenshot: {e}", flush=True)

    def run(self):
        started = time.monotonic()
        try:
            self.start()
        except Exception as e:
            print(f"FAIL - start chromium ({self.args.chromium}) through {self.args.chromedriver}: {e}", flush=True)
            return 1
        try:
            checks = [
                ("page loads with its logo", self.check_load),
                ("a message gets a streamed reply", self.check_send),
                ("clicking the reply regenerates it", self.check_regenerate),
                ("a server 400 is shown and the chat goes on", self.check_server_error),
            ]
            for name, fn in checks:
                if not self.run_check(name, fn):
                    break
            self.screenshot()  # one exchange, the rejected message and its error, the follow-up
            if not self.failed:
                for name, fn in [("slash commands", self.check_commands),
                                 ("/clear empties the transcript", self.check_clear),
                                 ("narrow (phone) viewport", self.check_mobile)]:
                    if not self.run_check(name, fn):
                        self.screenshot()
                        break
            try:
                severe = [e["message"] for e in self.driver.get_log("browser")
                          if e.get("level") == "SEVERE" and "Failed to load resource" not in e["message"]]
            except Exception:
                severe = []
            if severe:
                print("FAIL - no JavaScript errors in the console:\n    " + "\n    ".join(severe), flush=True)
                self.failed = True
        finally:
            self.stop()
        total = time.monotonic() - started
        print(("FAILED" if self.failed else "all checks passed") + f" in {total:.1f}s", flush=True)
        return 1 if self.failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="base URL of a running `nanochat serve`, e.g. http://127.0.0.1:8000")
    ap.add_argument("--screenshot", required=True, help="PNG written after the error check (and OUT-mobile.png)")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    ap.add_argument("--timeout", type=float, default=60.0, help="limit of each wait, seconds")
    ap.add_argument("--total-timeout", type=int, default=300, help="limit of the whole run, seconds")
    ap.add_argument("--max-tokens", type=int, default=None,
                    help="type this into the page's max-tokens setting before chatting (default: keep 512)")
    ap.add_argument("--api-key", default=None, help="the key the server was started with (--api-key)")
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--height", type=int, default=1000)
    args = ap.parse_args()
    for path in (args.chromium, args.chromedriver):
        if not os.access(path, os.X_OK):
            print(f"FAIL - {path} not found: install Debian's chromium and chromium-driver (make test-setup)")
            return 1

    def watchdog(signum, frame):
        raise CheckFailed(f"the whole run exceeded --total-timeout {args.total_timeout}s")

    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(args.total_timeout)
    return Runner(args).run()


if __name__ == "__main__":
    sys.exit(main())
