#!/usr/bin/env python3
"""`nanochat serve` through OpenAI's own Python client (the `openai` package pinned in manifests/python/test.lock).

Checks that what the server answers at /v1 is what the official client parses and expects: the model list,
a non-streaming completion and its usage, the same request streamed (greedy, so the deltas must concatenate
to exactly the non-streaming text, with the role first, one finish_reason and the usage last), seeded
sampling (same seed -> same text, another seed -> different text), n=3, the OpenAI-style errors as the
client's exception classes (400 naming the param, 404 model_not_found, an unknown field), and content parts.

    python tests/serve/openai_client.py --url http://127.0.0.1:PORT     (the server already running)

Prints one line per check ("ok - ..." or "FAIL - ..." with details) and exits 0 only when all pass. Every
request is bounded by the client's timeout; the client never retries.
"""

import argparse
import sys
import traceback

import openai

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
    {"role": "user", "content": "Why is the sky blue?"},
]
MAX_TOKENS = 16


class Checks:
    def __init__(self, client):
        self.client = client
        self.model = "nanochat"  # replaced by the id /v1/models lists
        self.greedy = None  # the non-streaming greedy completion, for the streaming check
        self.failures = 0

    def run(self, name, fn):
        try:
            detail = fn()
        except Exception as e:  # a failed assertion or anything the client raised
            self.failures += 1
            if isinstance(e, AssertionError):
                print(f"FAIL - {name}: {e}")
            elif isinstance(e, openai.APIStatusError):
                print(f"FAIL - {name}: {type(e).__name__} HTTP {e.status_code}: {e.body!r}")
            elif isinstance(e, openai.APIError):  # connection, timeout, a response the client cannot parse
                print(f"FAIL - {name}: {type(e).__name__}: {e} ({e.__cause__!r})")
            else:  # the client choked on the answer: show where
                print(f"FAIL - {name}: {type(e).__name__}: {e}")
                traceback.print_exc(file=sys.stdout)
            return
        print(f"ok - {name}" + (f" ({detail})" if detail else ""))

    # 1
    def models(self):
        models = list(self.client.models.list())
        assert len(models) == 1, f"expected exactly one model, got {len(models)}: {models!r}"
        m = models[0]
        assert isinstance(m.id, str) and m.id, f"model id {m.id!r}"
        assert m.object == "model", f"object {m.object!r}"
        self.model = m.id
        return f"id {m.id}"

    # 2
    def non_streaming(self):
        r = self.client.chat.completions.create(model=self.model, messages=MESSAGES, max_tokens=MAX_TOKENS,
                                                temperature=0)
        assert r.object == "chat.completion", f"object {r.object!r}"
        assert isinstance(r.id, str) and r.id, f"id {r.id!r}"
        assert r.model == self.model, f"model {r.model!r}, expected {self.model!r}"
        assert len(r.choices) == 1, f"{len(r.choices)} choices"
        c = r.choices[0]
        assert c.index == 0, f"index {c.index}"
        assert c.message.role == "assistant", f"role {c.message.role!r}"
        assert isinstance(c.message.content, str), f"content {c.message.content!r}"
        assert c.finish_reason in ("stop", "length"), f"finish_reason {c.finish_reason!r}"
        u = r.usage
        assert u is not None, "no usage"
        assert u.prompt_tokens > 0, f"prompt_tokens {u.prompt_tokens}"
        assert 1 <= u.completion_tokens <= MAX_TOKENS, f"completion_tokens {u.completion_tokens}"
        assert u.total_tokens == u.prompt_tokens + u.completion_tokens, f"usage {u}"
        if c.finish_reason == "length":
            assert u.completion_tokens == MAX_TOKENS, f"finish_reason length after {u.completion_tokens} tokens"
        self.greedy = r
        return f"{u.prompt_tokens}+{u.completion_tokens} tokens, {c.finish_reason}, {c.message.content!r}"

    # 3
    def streaming(self):
        assert self.greedy is not None, "no non-streaming reply to compare with (its check failed)"
        want = self.greedy.choices[0]
        stream = self.client.chat.completions.create(model=self.model, messages=MESSAGES, max_tokens=MAX_TOKENS,
                                                     temperature=0, stream=True,
                                                     stream_options={"include_usage": True})
        chunks = list(stream)
        assert chunks, "no chunks"
        for ch in chunks:
            assert ch.object == "chat.completion.chunk", f"chunk object {ch.object!r}"
            assert ch.id == chunks[0].id, f"chunk ids differ: {ch.id!r} vs {chunks[0].id!r}"
            assert ch.model == self.model, f"chunk model {ch.model!r}"
        first = chunks[0]
        assert first.choices and first.choices[0].delta.role == "assistant", f"first chunk {first!r}"
        text = "".join(c.delta.content or "" for ch in chunks for c in ch.choices)
        assert text == want.message.content, \
            f"streamed text {text!r} != non-streaming {want.message.content!r}"
        finishes = [c.finish_reason for ch in chunks for c in ch.choices if c.finish_reason is not None]
        assert finishes == [want.finish_reason], \
            f"finish_reasons {finishes!r}, expected exactly one {want.finish_reason!r}"
        for ch in chunks[:-1]:
            assert ch.usage is None, f"usage before the last chunk: {ch!r}"
        last = chunks[-1]
        assert last.usage is not None, f"last chunk has no usage: {last!r}"
        assert last.choices == [], f"the usage chunk has choices: {last.choices!r}"
        got = (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens)
        u = self.greedy.usage
        assert got == (u.prompt_tokens, u.completion_tokens, u.total_tokens), \
            f"stream usage {got} != non-streaming {(u.prompt_tokens, u.completion_tokens, u.total_tokens)}"
        return f"{len(chunks)} chunks"

    # 4
    def seeded(self):
        def sample(seed):
            r = self.client.chat.completions.create(model=self.model, messages=MESSAGES, max_tokens=32,
                                                    temperature=1.0, seed=seed)
            return r.choices[0].message.content
        a, b, c = sample(123), sample(123), sample(124)
        assert a == b, f"seed 123 twice gave different text: {a!r} vs {b!r}"
        assert a != c, f"seeds 123 and 124 gave the same text: {a!r}"
        return f"seed 123 -> {a[:24]!r}..., seed 124 -> {c[:24]!r}..."

    # 5
    def n3(self):
        r = self.client.chat.completions.create(model=self.model, messages=MESSAGES, max_tokens=MAX_TOKENS,
                                                temperature=1.0, seed=5, n=3)
        assert [c.index for c in r.choices] == [0, 1, 2], f"indexes {[c.index for c in r.choices]}"
        for c in r.choices:
            assert c.message.role == "assistant" and isinstance(c.message.content, str), f"choice {c!r}"
            assert c.finish_reason in ("stop", "length"), f"finish_reason {c.finish_reason!r}"
        texts = [c.message.content for c in r.choices]
        assert len(set(texts)) > 1, f"the three samples are identical: {texts[0]!r}"
        u = r.usage
        assert u.total_tokens == u.prompt_tokens + u.completion_tokens, f"usage {u}"
        return f"usage {u.prompt_tokens}+{u.completion_tokens}"

    # 6
    def errors(self):
        def expect(cls, status, **kw):
            try:
                self.client.chat.completions.create(model=kw.pop("model", self.model), messages=MESSAGES,
                                                    max_tokens=4, **kw)
            except cls as e:
                assert e.status_code == status, f"{kw}: status {e.status_code}, expected {status}"
                assert isinstance(e.body, dict), f"{kw}: body {e.body!r}"
                assert isinstance(e.body.get("message"), str) and e.body["message"], f"{kw}: body {e.body!r}"
                return e
            except openai.APIError as e:
                raise AssertionError(f"{kw}: {type(e).__name__} {getattr(e, 'status_code', '')} {e.body!r}, "
                                     f"expected {cls.__name__}")
            raise AssertionError(f"{kw}: accepted, expected {cls.__name__}")

        e = expect(openai.BadRequestError, 400, temperature=3)
        assert e.param == "temperature" and e.body.get("param") == "temperature", f"temperature=3: body {e.body!r}"
        assert e.type == "invalid_request_error", f"temperature=3: type {e.type!r}"
        e = expect(openai.NotFoundError, 404, model="gpt-4o")
        assert e.code == "model_not_found", f"model=gpt-4o: code {e.code!r}, body {e.body!r}"
        e = expect(openai.BadRequestError, 400, extra_body={"bogus": 1})
        assert e.param == "bogus", f"bogus field: param {e.param!r}, body {e.body!r}"
        assert "bogus" in e.body["message"], f"bogus field: message {e.body['message']!r}"
        return "400 temperature, 404 model_not_found, 400 bogus"

    # 7
    def content_parts(self):
        r = self.client.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
            max_tokens=8, temperature=0)
        assert len(r.choices) == 1 and isinstance(r.choices[0].message.content, str), f"reply {r!r}"
        assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens >= 1, f"usage {r.usage}"
        # The same text as a plain string must give the same greedy reply from the same prompt tokens.
        p = self.client.chat.completions.create(model=self.model, messages=[{"role": "user", "content": "Hi"}],
                                                max_tokens=8, temperature=0)
        assert p.usage.prompt_tokens == r.usage.prompt_tokens, \
            f"prompt tokens: parts {r.usage.prompt_tokens} vs string {p.usage.prompt_tokens}"
        assert p.choices[0].message.content == r.choices[0].message.content, \
            f"parts {r.choices[0].message.content!r} vs string {p.choices[0].message.content!r}"
        return "same reply as the plain string"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="the running server, e.g. http://127.0.0.1:8000")
    ap.add_argument("--api-key", default=None, help="the server's --api-key: also checks that another key gets 401")
    args = ap.parse_args()
    base_url = args.url.rstrip("/") + "/v1"
    client = openai.OpenAI(base_url=base_url, api_key=args.api_key or "unused", max_retries=0, timeout=60)
    ck = Checks(client)
    if args.api_key:
        def wrong_key():
            other = openai.OpenAI(base_url=base_url, api_key=args.api_key + "-wrong", max_retries=0, timeout=60)
            try:
                other.models.list()
            except openai.AuthenticationError as e:
                assert e.status_code == 401 and "not valid" in str(e), f"{e!r}"
                return "401 AuthenticationError"
            raise AssertionError("a wrong key was accepted")
        ck.run("a wrong API key is refused with 401", wrong_key)
    ck.run("models.list: exactly one model", ck.models)
    ck.run("non-streaming greedy completion", ck.non_streaming)
    ck.run("streaming greedy completion matches the non-streaming one", ck.streaming)
    ck.run("seeded sampling: same seed same text, other seed other text", ck.seeded)
    ck.run("n=3: three choices indexed 0,1,2", ck.n3)
    ck.run("errors as the client's exceptions", ck.errors)
    ck.run("content parts [{type: text}]", ck.content_parts)
    if ck.failures:
        print(f"{ck.failures} check(s) failed")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
