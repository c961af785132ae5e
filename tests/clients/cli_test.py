#!/usr/bin/python3
"""The `roomcast` CLI against the real roomcast-core binary on port 0.

Usage: cli_test.py --core-binary PATH --cli-binary PATH
Each check prints a line; the script exits non-zero on the first failure.
"""
import argparse
import base64
import json
import socket
import subprocess
import sys
import time
import unittest

ARGS = None


def free_port_closed():
    """A loopback port nobody listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class CliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.core = subprocess.Popen(
            [ARGS.core_binary, "--listen=127.0.0.1:0", "--shutdown_grace=1s"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = cls.core.stdout.readline()
        if not line.startswith("listening on "):
            cls.core.kill()
            raise RuntimeError("roomcast-core did not start: %r %s" % (line, cls.core.stderr.read()))
        cls.address = line.split()[-1]

    @classmethod
    def tearDownClass(cls):
        cls.core.terminate()
        cls.core.wait(timeout=10)

    def cli(self, *args, stdin=None, timeout=20, core=True):
        argv = [ARGS.cli_binary] + (["--core", self.address] if core else []) + list(args)
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)

    def ok(self, *args, **kwargs):
        result = self.cli(*args, **kwargs)
        self.assertEqual(result.returncode, 0, "%s: %s" % (args, result.stderr))
        return result

    def test_publish_stdin_then_tail_since_and_history(self):
        published = self.ok("publish", "cli-roundtrip", stdin="first\nsecond\nthird\n")
        positions = published.stdout.split()
        self.assertEqual(len(positions), 3, published.stdout)
        epoch = positions[0].rsplit(":", 1)[0]
        self.assertEqual(positions, ["%s:%d" % (epoch, i) for i in (1, 2, 3)])

        tail = self.ok("tail", "cli-roundtrip", "--since", epoch + ":0", "--count", "3",
                       "--timeout", "10s")
        lines = [l.split("\t") for l in tail.stdout.splitlines()]
        self.assertEqual(lines, [["cli-roundtrip", "%s:%d" % (epoch, i), data]
                                 for i, data in ((1, "first"), (2, "second"), (3, "third"))])

        # --json: one SubscribeResponse per line; payloads are base64.
        tail = self.ok("tail", "cli-roundtrip", "--since=%s:1" % epoch, "--count=2",
                       "--timeout=10s", "--json")
        events = [json.loads(l) for l in tail.stdout.splitlines()]
        messages = [e["message"] for e in events if "message" in e]
        self.assertEqual([base64.b64decode(m["data"]).decode() for m in messages],
                         ["second", "third"])
        self.assertEqual([m["position"]["offset"] for m in messages], ["2", "3"])

        history = self.ok("history", "cli-roundtrip", "--json")
        response = json.loads(history.stdout)
        self.assertEqual(response["position"], {"epoch": epoch, "offset": "3"})
        self.assertEqual([base64.b64decode(m["data"]).decode() for m in response["messages"]],
                         ["first", "second", "third"])
        history = self.ok("history", "cli-roundtrip", "--limit=1", "--reverse")
        self.assertEqual(history.stdout, "cli-roundtrip\t%s:3\tthird\n" % epoch)

    def test_tail_receives_live_messages(self):
        tail = subprocess.Popen(
            [ARGS.cli_binary, "--core", self.address, "tail", "cli-live", "--count=2",
             "--timeout=15s", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # The recovery marker says the subscription is in place.
        first = json.loads(tail.stdout.readline())
        self.assertTrue(first["recovery"]["recovered"])
        self.ok("publish", "cli-live", "one")
        self.ok("publish", "cli-live", "two")
        out, err = tail.communicate(timeout=15)
        self.assertEqual(tail.returncode, 0, err)
        data = [base64.b64decode(json.loads(l)["message"]["data"]).decode()
                for l in out.splitlines()]
        self.assertEqual(data, ["one", "two"])

    def test_tail_times_out_short_of_count(self):
        self.ok("publish", "cli-short", "only one")
        result = self.cli("tail", "cli-short", "--since", ":0", "--count=5", "--timeout=1s")
        # ":0" is another epoch: recovered: false is reported on stderr, and
        # nothing is replayed, so the count is not reached.
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("recovered: false", result.stderr)
        self.assertIn("DEADLINE_EXCEEDED", result.stderr)

    def test_json_outputs_parse(self):
        self.ok("publish", "cli-json", "x")
        published = json.loads(self.ok("publish", "cli-json", "y", "--json").stdout)
        self.assertEqual(published["position"]["offset"], "2")
        rooms = json.loads(self.ok("rooms", "--json", "--prefix=cli-json").stdout)
        self.assertEqual([r["room"] for r in rooms["rooms"]], ["cli-json"])
        stats = json.loads(self.ok("stats", "--json").stdout)
        self.assertGreaterEqual(int(stats["messagesPublishedTotal"]), 2)
        presence = json.loads(self.ok("presence", "cli-json", "--json").stdout)
        self.assertEqual(presence, {"clients": []})
        counts = json.loads(self.ok("presence", "cli-json", "--stats", "--json").stdout)
        self.assertEqual(counts, {"numClients": 0, "numUsers": 0})
        acks = [json.loads(l) for l in
                self.ok("publish", "cli-json", "--json", stdin="a\nb\n").stdout.splitlines()]
        self.assertEqual([a["id"] for a in acks], ["1", "2"])
        self.assertEqual([a["position"]["offset"] for a in acks], ["3", "4"])

    def test_core_error_exits_1_with_the_code_name(self):
        result = self.cli("publish", "bad room!", "x")
        self.assertEqual(result.returncode, 1)
        self.assertIn("INVALID_ARGUMENT", result.stderr)
        self.assertEqual(result.stdout, "")
        # One bad line in stdin: the others are published, the exit says so.
        result = self.cli("publish", "cli-partial", stdin="ok\n" + "x" * 70000 + "\nok\n")
        self.assertEqual(result.returncode, 1)
        self.assertIn("line 2: INVALID_ARGUMENT", result.stderr)
        self.assertEqual(len(result.stdout.split()), 2)

    def test_unreachable_core_exits_1_unavailable_quickly(self):
        port = free_port_closed()
        for args in (["stats"], ["publish", "r", "x"], ["tail", "r", "--retries=2"]):
            start = time.monotonic()
            result = self.cli("--core", "127.0.0.1:%d" % port, *args, core=False)
            self.assertEqual(result.returncode, 1, (args, result.stderr))
            self.assertIn("UNAVAILABLE", result.stderr)
            self.assertLess(time.monotonic() - start, 10, args)

    def test_usage_errors_exit_2(self):
        for args in (["frobnicate"], [], ["tail"], ["history", "a", "b"], ["--bogus", "stats"],
                     ["rooms", "--count=3"], ["history", "r", "--limit=many"],
                     ["tail", "r", "--since=nocolon"], ["tail", "a", "b", "--since=e:1"]):
            result = self.cli(*args)
            self.assertEqual(result.returncode, 2, (args, result.stderr))
            self.assertTrue(result.stderr, args)

    def test_help_on_every_subcommand(self):
        top = self.cli("--help", core=False)
        self.assertEqual(top.returncode, 0)
        self.assertIn("exit status", top.stdout)
        for command in ("publish", "tail", "history", "presence", "rooms", "stats"):
            for argv in ([command, "--help"], ["help", command]):
                result = self.cli(*argv, core=False)
                self.assertEqual(result.returncode, 0, argv)
                self.assertTrue(result.stdout.startswith("usage: roomcast " + command), argv)
                self.assertIn("--core", result.stdout)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--core-binary", required=True)
    parser.add_argument("--cli-binary", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
