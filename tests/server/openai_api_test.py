#!/usr/bin/env python3
"""The OpenAI-compatible HTTP API of the real sliminfer-server (default model, CPU, loopback)
through the official `openai` Python package: chat and completions, streamed and not, usage,
stop, seed reproducibility, logprobs, pruning options, every error class (400 with its param,
401 on both front ends, 404 model and path, 413, 429, 503 draining, 504 deadline), a disconnect mid-stream (KV
back to its baseline), 16 concurrent streams, and the acceptance check: a streamed greedy chat
completion equals the gRPC Generate text for the same request (through sliminfer-cli).

Usage: openai_api_test.py BUILD_DIR [unittest args]. Servers run as subprocesses on free ports.
"""
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import openai

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(ROOT, "build")
MODEL = os.environ.get("SLIM_DEFAULT_MODEL", os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
SERVED = "SmolLM2-135M-Instruct.Q4_1"
PROMPT = "The capital of France is"
CHAT = [{"role": "user", "content": "What is the capital of France?"}]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path, headers=None):
    """(status, body) of GET http://127.0.0.1:port/path."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Server:
    """sliminfer-server on free loopback ports, SERVING once constructed."""

    def __init__(self, *extra, env=None):
        self.grpc_port, self.http_port = free_port(), free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="sliminfer-openai-", suffix=".log", delete=False)
        argv = [os.path.join(BUILD, "bin", "sliminfer-server"), "--model", MODEL, "--host", "127.0.0.1",
                "--port", str(self.grpc_port), "--http-host", "127.0.0.1", "--http-port", str(self.http_port),
                "--kv-tokens", "8192", "--threads", "2", "--log-level", "warn", *extra]
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})
        deadline = time.time() + 120
        while time.time() < deadline and self.proc.poll() is None:
            try:
                if http_get(self.http_port, "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not become SERVING:\n" + self.output())

    def output(self):
        with open(self.log.name) as f:
            return f.read()[-4000:]

    def client(self, api_key="x"):
        return openai.OpenAI(base_url=f"http://127.0.0.1:{self.http_port}/v1", api_key=api_key, max_retries=0,
                             timeout=120)

    def metric(self, series):
        """Value of the first sample line `series value` in /metrics."""
        _, text = http_get(self.http_port, "/metrics")
        for line in text.splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        raise KeyError(series)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        os.unlink(self.log.name)


def wait_for(pred, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def error_body(e):
    """The OpenAI error object of an APIStatusError (the SDK unwraps {"error": ...})."""
    body = e.body
    return body.get("error", body) if isinstance(body, dict) else {}


KV_USED = 'sliminfer_kv_blocks{tier="gpu",state="used"}'


class OpenAiApi(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.client = cls.server.client()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_models_lists_the_served_model_with_its_context(self):
        models = self.client.models.list().data
        self.assertEqual([m.id for m in models], [SERVED])
        self.assertEqual(models[0].model_extra["max_model_len"], 8192)
        self.assertEqual(self.client.models.retrieve(SERVED).id, SERVED)

    def test_chat_completion_with_usage(self):
        r = self.client.chat.completions.create(model=SERVED, messages=CHAT, max_tokens=16, temperature=0)
        self.assertTrue(r.id.startswith("chatcmpl-req-"))
        self.assertEqual(r.object, "chat.completion")
        self.assertEqual(r.model, SERVED)
        self.assertEqual(len(r.choices), 1)
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertIn("Paris", r.choices[0].message.content)
        self.assertIn(r.choices[0].finish_reason, ("stop", "length"))
        u = r.usage
        self.assertGreater(u.prompt_tokens, 5)
        self.assertTrue(1 <= u.completion_tokens <= 16)
        self.assertEqual(u.total_tokens, u.prompt_tokens + u.completion_tokens)

    def test_streamed_chat_equals_the_unstreamed_text_one_chunk_per_token(self):
        full = self.client.chat.completions.create(model=SERVED, messages=CHAT, max_tokens=24, temperature=0)
        chunks = list(self.client.chat.completions.create(model=SERVED, messages=CHAT, max_tokens=24, temperature=0,
                                                          stream=True, stream_options={"include_usage": True}))
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, full.choices[0].message.content)
        finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        self.assertEqual(finals, [full.choices[0].finish_reason])
        self.assertEqual(chunks[-1].choices, [])  # the usage chunk
        self.assertEqual(chunks[-1].usage.completion_tokens, full.usage.completion_tokens)
        self.assertEqual(chunks[-1].usage.prompt_tokens, full.usage.prompt_tokens)
        token_chunks = [c for c in chunks[1:] if c.choices and c.choices[0].finish_reason is None]
        self.assertEqual(len(token_chunks), full.usage.completion_tokens)
        self.assertTrue(all(c.usage is None for c in chunks[:-1]))

    def test_completions_streamed_and_not(self):
        full = self.client.completions.create(model=SERVED, prompt=PROMPT, max_tokens=12, temperature=0,
                                              extra_body={"ignore_eos": True})
        self.assertEqual(full.object, "text_completion")
        self.assertEqual(full.usage.completion_tokens, 12)
        self.assertEqual(full.choices[0].finish_reason, "length")
        chunks = list(self.client.completions.create(model=SERVED, prompt=PROMPT, max_tokens=12, temperature=0,
                                                     stream=True, extra_body={"ignore_eos": True}))
        self.assertEqual("".join(c.choices[0].text for c in chunks), full.choices[0].text)
        self.assertEqual(chunks[-1].choices[0].finish_reason, "length")
        self.assertIsNone(chunks[-1].usage)  # no include_usage: no usage chunk
        # A prompt of token ids gives the same text as its string.
        ids = self.client.completions.create(model=SERVED, prompt=[504, 3575, 282, 4649, 314], max_tokens=4,
                                             temperature=0)
        self.assertEqual(ids.usage.prompt_tokens, 5)

    def test_acceptance_streamed_greedy_chat_equals_grpc_generate(self):
        stream = self.client.chat.completions.create(model=SERVED, messages=CHAT, max_tokens=32, temperature=0,
                                                     stream=True)
        http_text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        cli = subprocess.run([os.path.join(BUILD, "bin", "sliminfer-cli"), "--server",
                              f"127.0.0.1:{self.server.grpc_port}", "generate", "--prompt", CHAT[0]["content"],
                              "--chat", "--max-tokens", "32", "--json"],
                             capture_output=True, text=True, timeout=120, check=True)
        grpc_text = json.loads(cli.stdout)["text"]
        self.assertTrue(http_text)
        self.assertEqual(http_text, grpc_text)

    def test_stop_string_ends_the_text_before_it(self):
        full = self.client.completions.create(model=SERVED, prompt=PROMPT, max_tokens=24, temperature=0,
                                              extra_body={"ignore_eos": True}).choices[0].text
        words = full.split()
        self.assertGreater(len(words), 3, full)
        stop = words[2]
        r = self.client.completions.create(model=SERVED, prompt=PROMPT, max_tokens=24, temperature=0,
                                           stop=[stop, "never-occurs"], extra_body={"ignore_eos": True})
        self.assertEqual(r.choices[0].text, full[:full.index(stop)])
        self.assertEqual(r.choices[0].finish_reason, "stop")
        s = list(self.client.completions.create(model=SERVED, prompt=PROMPT, max_tokens=24, temperature=0,
                                                stop=stop, stream=True, extra_body={"ignore_eos": True}))
        self.assertEqual("".join(c.choices[0].text for c in s), full[:full.index(stop)])

    def test_a_seed_reproduces_a_sampled_completion(self):
        def sample(seed):
            return self.client.completions.create(model=SERVED, prompt=PROMPT, max_tokens=24, temperature=1.0,
                                                  seed=seed, extra_body={"ignore_eos": True}).choices[0].text
        a = sample(1234)
        self.assertEqual(sample(1234), a)
        self.assertNotEqual({sample(s) for s in (1, 2, 3)}, {a})

    def test_chat_logprobs(self):
        r = self.client.chat.completions.create(model=SERVED, messages=CHAT, max_tokens=6, temperature=0,
                                                logprobs=True, top_logprobs=3, extra_body={"ignore_eos": True})
        content = r.choices[0].logprobs.content
        self.assertEqual(len(content), 6)
        for t in content:
            self.assertLessEqual(t.logprob, 0.0)
            self.assertEqual(len(t.top_logprobs), 3)
            tops = [x.logprob for x in t.top_logprobs]
            self.assertEqual(tops, sorted(tops, reverse=True))
            self.assertAlmostEqual(t.logprob, tops[0], places=4)  # greedy picks the top token
            self.assertEqual(bytes(t.bytes).decode("utf-8", "replace"), t.token)
        self.assertEqual("".join(t.token for t in content), r.choices[0].message.content)
        plain = self.client.chat.completions.create(model=SERVED, messages=CHAT, max_tokens=2)
        self.assertIsNone(plain.choices[0].logprobs)

    def test_completion_logprobs_streamed(self):
        chunks = list(self.client.completions.create(model=SERVED, prompt=PROMPT, max_tokens=5, temperature=0,
                                                     logprobs=2, stream=True, extra_body={"ignore_eos": True}))
        per_token = [c.choices[0].logprobs for c in chunks if c.choices[0].finish_reason is None]
        self.assertEqual(len(per_token), 5)
        for lp in per_token:
            self.assertEqual(len(lp.tokens), 1)
            self.assertLessEqual(lp.token_logprobs[0], 0.0)
            self.assertEqual(len(lp.top_logprobs[0]), 2)

    def test_pruning_options_are_applied_and_echoed(self):
        prompt = " ".join(f"Item {i} is a fruit." for i in range(60))  # ~360 tokens: past the first keep
        r = self.client.completions.create(model=SERVED, prompt=prompt, max_tokens=2,
                                           extra_body={"pruning": {"mode": "default"}})
        p = r.model_extra["pruning"]
        self.assertTrue(p["applied"])
        self.assertEqual(p["prompt_tokens"], r.usage.prompt_tokens)
        self.assertTrue(p["stages"])
        self.assertLess(p["stages"][-1]["tokens_kept"], r.usage.prompt_tokens)
        self.assertLess(p["kv_bytes"], p["dense_kv_bytes"])
        off = self.client.completions.create(model=SERVED, prompt=prompt, max_tokens=2,
                                             extra_body={"pruning": {"mode": "off"}})
        self.assertFalse(off.model_extra["pruning"]["applied"])
        explicit = self.client.completions.create(
            model=SERVED, prompt=prompt, max_tokens=2,
            extra_body={"pruning": {"stages": [{"layer": 10, "fraction": 0.7}, {"layer": 20, "tokens": 128}]}})
        stages = explicit.model_extra["pruning"]["stages"]
        self.assertEqual([s["layer"] for s in stages], [10, 20])
        self.assertLess(stages[1]["tokens_kept"], stages[0]["tokens_kept"])

    def test_vllm_sampling_extras_are_accepted(self):
        r = self.client.completions.create(model=SERVED, prompt=PROMPT, max_tokens=20, temperature=0.8, seed=7,
                                           extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1,
                                                       "ignore_eos": True})
        self.assertEqual(r.usage.completion_tokens, 20)

    def test_invalid_fields_are_400_naming_the_param(self):
        cases = [
            (dict(temperature=500.0), "temperature"),
            (dict(top_p=1.5), "top_p"),
            (dict(n=2), "n"),
            (dict(max_tokens=100000), "max_tokens"),
            (dict(extra_body={"top_k": "many"}), "top_k"),
            (dict(extra_body={"pruning": {"mode": "aggressive"}}), "pruning.mode"),
            (dict(messages=[{"role": "wizard", "content": "hi"}]), "messages[0].role"),
        ]
        for kwargs, param in cases:
            args = dict(model=SERVED, messages=CHAT, max_tokens=4)
            args.update(kwargs)
            with self.subTest(param=param), self.assertRaises(openai.BadRequestError) as cm:
                self.client.chat.completions.create(**args)
            err = error_body(cm.exception)
            self.assertEqual(cm.exception.status_code, 400)
            self.assertEqual(err["param"], param, err)
            self.assertEqual(err["type"], "invalid_request_error")
            self.assertEqual(err["code"], "invalid_argument")
        with self.assertRaises(openai.BadRequestError) as cm:
            self.client.completions.create(model=SERVED, prompt="", max_tokens=4)
        self.assertEqual(error_body(cm.exception)["param"], "prompt")
        req = urllib.request.Request(f"http://127.0.0.1:{self.server.http_port}/v1/completions", data=b"{not json",
                                     headers={"Content-Type": "application/json"})
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(req, timeout=30)
        self.assertEqual(cm.exception.code, 400)

    def test_unknown_model_and_unknown_path_are_404(self):
        with self.assertRaises(openai.NotFoundError) as cm:
            self.client.chat.completions.create(model="gpt-17", messages=CHAT, max_tokens=2)
        self.assertEqual(error_body(cm.exception)["code"], "model_not_found")
        self.assertEqual(error_body(cm.exception)["param"], "model")
        status, body = http_get(self.server.http_port, "/v1/nothing-here")
        self.assertEqual(status, 404)
        self.assertEqual(json.loads(body)["error"]["type"], "not_found_error")

    def test_deadline_is_504_before_or_during_the_stream(self):
        timeout = {"X-Request-Timeout": "0.5"}
        with self.assertRaises(openai.APIStatusError) as cm:
            self.client.completions.create(model=SERVED, prompt=PROMPT, max_tokens=4000, extra_headers=timeout,
                                           extra_body={"ignore_eos": True})
        self.assertEqual(cm.exception.status_code, 504)
        self.assertEqual(error_body(cm.exception)["code"], "deadline_exceeded")
        got = []
        with self.assertRaises(openai.APIError) as cm:
            for c in self.client.completions.create(model=SERVED, prompt=PROMPT, max_tokens=4000, stream=True,
                                                    extra_headers={"X-Request-Timeout": "1.5"},
                                                    extra_body={"ignore_eos": True}):
                got.append(c)
        self.assertGreater(len(got), 0)  # it started, then the deadline ended it in the stream
        self.assertIn("deadline", str(cm.exception))
        with self.assertRaises(openai.BadRequestError) as cm:
            self.client.completions.create(model=SERVED, prompt=PROMPT, max_tokens=2,
                                           extra_headers={"X-Request-Timeout": "soon"})
        self.assertEqual(error_body(cm.exception)["param"], "X-Request-Timeout")

    def test_disconnect_mid_stream_cancels_and_frees_the_kv(self):
        self.assertTrue(wait_for(lambda: self.server.metric("sliminfer_num_requests_running") == 0))
        baseline = self.server.metric(KV_USED)
        cancelled = self.server.metric('sliminfer_requests_total{outcome="cancelled"}')
        stream = self.client.completions.create(model=SERVED, prompt=PROMPT, max_tokens=4000, stream=True,
                                                extra_body={"ignore_eos": True})
        next(iter(stream))
        self.assertGreater(self.server.metric(KV_USED), baseline)
        stream.close()
        self.assertTrue(wait_for(lambda: self.server.metric(KV_USED) == baseline and
                                 self.server.metric("sliminfer_num_requests_running") == 0))
        self.assertTrue(wait_for(
            lambda: self.server.metric('sliminfer_requests_total{outcome="cancelled"}') == cancelled + 1))

    def test_sixteen_concurrent_streams(self):
        def one(i):
            chunks = list(self.client.completions.create(model=SERVED, prompt=f"Story number {i}:", max_tokens=12,
                                                         temperature=0, stream=True, extra_body={"ignore_eos": True}))
            return sum(1 for c in chunks if c.choices[0].finish_reason is None), chunks[-1].choices[0].finish_reason
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(one, range(16)))
        self.assertEqual(results, [(12, "length")] * 16)


class ApiKey(unittest.TestCase):
    def test_key_guards_v1_but_not_health_or_metrics(self):
        server = Server(env={"SLIMINFER_API_KEY": "k-123456"})  # the key stays out of argv
        try:
            with self.assertRaises(openai.AuthenticationError) as cm:
                server.client("wrong").chat.completions.create(model=SERVED, messages=CHAT, max_tokens=2)
            self.assertEqual(cm.exception.status_code, 401)
            self.assertEqual(error_body(cm.exception)["code"], "unauthenticated")
            with self.assertRaises(openai.AuthenticationError):
                server.client("wrong").models.list()
            r = server.client("k-123456").chat.completions.create(model=SERVED, messages=CHAT, max_tokens=2)
            self.assertEqual(r.usage.completion_tokens, 2)
            self.assertEqual(http_get(server.http_port, "/health")[0], 200)
            self.assertEqual(http_get(server.http_port, "/metrics")[0], 200)
            self.assertEqual(server.metric('sliminfer_requests_total{outcome="unauthenticated"}'), 1)
            # gRPC: the same key as `authorization: Bearer` metadata (sliminfer-cli reads SLIMINFER_API_KEY).
            cli = [os.path.join(BUILD, "bin", "sliminfer-cli"), "--server", f"127.0.0.1:{server.grpc_port}",
                   "generate", "--prompt", "Hi", "--max-tokens", "2", "--json"]
            env = {k: v for k, v in os.environ.items() if k != "SLIMINFER_API_KEY"}
            refused = subprocess.run(cli, capture_output=True, text=True, timeout=120, env=env)
            self.assertEqual(refused.returncode, 1)
            self.assertIn("UNAUTHENTICATED", refused.stderr)
            ok = subprocess.run(cli, capture_output=True, text=True, timeout=120,
                                env={**env, "SLIMINFER_API_KEY": "k-123456"})
            self.assertEqual(ok.returncode, 0, ok.stderr)
            self.assertEqual(len(json.loads(ok.stdout)["token_ids"]), 2)
        finally:
            server.stop()


class Limits(unittest.TestCase):
    def test_413_then_429_then_503_while_draining(self):
        server = Server("--max-seqs", "1", "--max-queue", "0", "--http-max-body-bytes", "65536",
                        "--drain-grace-s", "60")
        client = server.client()
        try:
            with self.assertRaises(openai.APIStatusError) as cm:
                client.completions.create(model=SERVED, prompt="word " * 30000, max_tokens=2)
            self.assertEqual(cm.exception.status_code, 413)
            self.assertEqual(error_body(cm.exception)["code"], "request_too_large")

            # One long stream holds the only slot; with no queue the next request is refused.
            started, result = threading.Event(), {}

            def long_stream():
                n = 0
                for c in client.completions.create(model=SERVED, prompt=PROMPT, max_tokens=150, stream=True,
                                                   extra_body={"ignore_eos": True}):
                    n += 1
                    started.set()
                    result["finish"] = c.choices[0].finish_reason
                result["chunks"] = n
            t = threading.Thread(target=long_stream)
            t.start()
            self.assertTrue(started.wait(60))
            with self.assertRaises(openai.RateLimitError) as cm:
                client.completions.create(model=SERVED, prompt=PROMPT, max_tokens=2)
            self.assertEqual(error_body(cm.exception)["code"], "resource_exhausted")

            # SIGTERM: the stream in flight finishes, new requests get 503, /health says why.
            server.proc.send_signal(signal.SIGTERM)
            self.assertTrue(wait_for(lambda: http_get(server.http_port, "/health")[0] == 503, 10))
            status, body = http_get(server.http_port, "/health")
            self.assertIn("draining", json.loads(body)["reason"])
            with self.assertRaises(openai.APIStatusError) as cm:
                client.completions.create(model=SERVED, prompt=PROMPT, max_tokens=2)
            self.assertEqual(cm.exception.status_code, 503)
            t.join(120)
            self.assertEqual(result.get("chunks"), 151)
            self.assertEqual(result.get("finish"), "length")
            self.assertEqual(server.proc.wait(60), 0)
        finally:
            server.stop()


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
