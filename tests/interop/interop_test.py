#!/usr/bin/python3
"""Interop test: the real roomcast-core binary driven by python3-grpcio.

An independent gRPC implementation (Debian's python3-grpcio, run with
/usr/bin/python3) talks to a freshly started `roomcast-core --listen=127.0.0.1:0`
over a real socket and checks the Rooms API contract of
proto/roomcast/v1/roomcast.proto: positions, Subscribe replay/recovery/live
ordering, resume, PublishStream acks, status codes, Stats gauges returning to
zero, and a clean exit on SIGTERM.

Usage (normally through ctest, see tests/interop/CMakeLists.txt):
  /usr/bin/python3 interop_test.py --core-binary build/core/roomcast-core \
      --stubs build/tests/interop/python_stubs [unittest args...]

Every wait is bounded: each RPC has a deadline, each stream read a timeout,
and the server process is killed in tearDown and at interpreter exit.
"""

import argparse
import atexit
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
import unittest

# Filled in by main() before the tests run.
CORE_BINARY = None
grpc = None
pb = None
pb_grpc = None
struct_pb2 = None

RPC_TIMEOUT = 10.0  # Unary RPCs.
STREAM_DEADLINE = 60.0  # Whole-stream deadline (a backstop; reads time out sooner).
READ_TIMEOUT = 10.0  # One stream read.
START_TIMEOUT = 20.0  # Until "listening on" appears.
EXIT_TIMEOUT = 20.0  # From SIGTERM to exit (shutdown_grace is 5 s by default).

INVALID_ARGUMENT = 3

_ALL_PROCESSES = []


def _kill_all():
    for proc in _ALL_PROCESSES:
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


atexit.register(_kill_all)


class CoreProcess:
    """One roomcast-core process on 127.0.0.1 and a free port."""

    def __init__(self, *extra_flags):
        self.proc = subprocess.Popen(
            [CORE_BINARY, "--listen=127.0.0.1:0", *extra_flags],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=None,  # Inherited: shows up in ctest --output-on-failure.
        )
        _ALL_PROCESSES.append(self.proc)
        self.address = self._read_address()

    def _read_address(self):
        deadline = time.monotonic() + START_TIMEOUT
        fd = self.proc.stdout.fileno()
        buf = b""
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise AssertionError(
                    "roomcast-core printed no 'listening on' line within %.0f s (got %r)"
                    % (START_TIMEOUT, buf))
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                rc = self.proc.wait(timeout=5)
                raise AssertionError(
                    "roomcast-core exited (rc=%s) before listening; stdout so far %r" % (rc, buf))
            buf += chunk
        line = buf.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
        prefix = "listening on "
        if not line.startswith(prefix):
            self.kill()
            raise AssertionError("unexpected first stdout line from roomcast-core: %r" % line)
        address = line[len(prefix):]
        host, _, port = address.rpartition(":")
        if host != "127.0.0.1" or not port.isdigit() or int(port) == 0:
            self.kill()
            raise AssertionError("bad listen address in %r" % line)
        return address

    def terminate_and_wait(self, timeout=EXIT_TIMEOUT):
        """Sends SIGTERM and returns the exit code (None if it did not exit in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.stdout is not None:
            self.proc.stdout.close()
            self.proc.stdout = None


_END = object()


class StreamReader:
    """Reads a response stream on a thread so that every read has a timeout.

    next() returns the next response, or raises AssertionError on timeout or
    when the stream ended instead. end() waits for the stream's end and
    returns its grpc.StatusCode and details.
    """

    def __init__(self, call, name):
        self.call = call
        self.name = name
        self._queue = queue.Queue()
        self.code = None
        self.details = None
        self._thread = threading.Thread(target=self._run, name="reader-" + name, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            for response in self.call:
                self._queue.put(response)
        except grpc.RpcError as e:
            self.code = e.code()
            self.details = e.details()
        else:
            self.code = self.call.code()
            self.details = self.call.details()
        self._queue.put(_END)

    def next(self, timeout=READ_TIMEOUT):
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("%s: no response within %.1f s" % (self.name, timeout)) from None
        if item is _END:
            self._queue.put(_END)  # Later reads see the end too.
            raise AssertionError("%s: stream ended (%s: %s) while a response was expected"
                                 % (self.name, self.code, self.details))
        return item

    def expect_nothing(self, wait):
        """Asserts that no response (and no end) arrives within `wait` seconds."""
        try:
            item = self._queue.get(timeout=wait)
        except queue.Empty:
            return
        if item is _END:
            self._queue.put(_END)
            raise AssertionError("%s: stream ended (%s: %s) unexpectedly"
                                 % (self.name, self.code, self.details))
        raise AssertionError("%s: unexpected response %s" % (self.name, _short(item)))

    def end(self, timeout=READ_TIMEOUT):
        """Waits for the end of the stream; fails if a response comes first."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("%s: stream did not end within %.1f s"
                                 % (self.name, timeout)) from None
        if item is not _END:
            raise AssertionError("%s: expected the end of the stream, got %s"
                                 % (self.name, _short(item)))
        self._queue.put(_END)
        return self.code, self.details

    def cancel(self):
        self.call.cancel()
        self._thread.join(timeout=READ_TIMEOUT)


def _short(message):
    return str(message).replace("\n", " ")[:300]


class RequestQueue:
    """A request iterator for client streaming that the test feeds by hand."""

    def __init__(self):
        self._queue = queue.Queue()

    def put(self, request):
        self._queue.put(request)

    def close(self):
        self._queue.put(_END)

    def __iter__(self):
        return self

    def __next__(self):
        # Bounded so that a forgotten close() cannot pin the sending thread.
        try:
            item = self._queue.get(timeout=STREAM_DEADLINE)
        except queue.Empty:
            raise StopIteration from None
        if item is _END:
            raise StopIteration
        return item


class InteropTest(unittest.TestCase):

    def setUp(self):
        self.core = CoreProcess()
        self.addCleanup(self.core.kill)
        self.channel = grpc.insecure_channel(self.core.address)
        self.addCleanup(self.channel.close)
        grpc.channel_ready_future(self.channel).result(timeout=RPC_TIMEOUT)
        self.rooms = pb_grpc.RoomsStub(self.channel)
        self.streams = []

    def tearDown(self):
        for s in self.streams:
            s.call.cancel()
        # Cleanups (registered in setUp) close the channel and kill the server.

    # -- helpers ------------------------------------------------------------

    def publish(self, room, data, **kwargs):
        return self.rooms.Publish(pb.PublishRequest(room=room, data=data, **kwargs),
                                  timeout=RPC_TIMEOUT).position

    def subscribe(self, *room_requests, name="subscribe", **kwargs):
        call = self.rooms.Subscribe(pb.SubscribeRequest(rooms=list(room_requests), **kwargs),
                                    timeout=STREAM_DEADLINE)
        reader = StreamReader(call, name)
        self.streams.append(reader)
        return reader

    def next_of(self, reader, kind):
        response = reader.next()
        self.assertEqual(response.WhichOneof("event"), kind,
                         "%s: expected a %s, got %s" % (reader.name, kind, _short(response)))
        return getattr(response, kind)

    def expect_messages(self, reader, room, epoch, first_offset, datas):
        for i, data in enumerate(datas):
            m = self.next_of(reader, "message")
            self.assertEqual(m.room, room)
            self.assertEqual(m.position.epoch, epoch)
            self.assertEqual(m.position.offset, first_offset + i,
                             "%s: message %d out of order" % (reader.name, i))
            self.assertEqual(m.data, data)

    def expect_recovery(self, reader, room, recovered, epoch, offset):
        r = self.next_of(reader, "recovery")
        self.assertEqual(r.room, room)
        self.assertEqual(r.recovered, recovered, "%s: recovery %s" % (reader.name, _short(r)))
        self.assertEqual(r.position.epoch, epoch)
        self.assertEqual(r.position.offset, offset)
        return r

    def assert_rpc_error(self, code, fn, *args, **kwargs):
        with self.assertRaises(grpc.RpcError) as cm:
            fn(*args, timeout=RPC_TIMEOUT, **kwargs)
        self.assertEqual(cm.exception.code(), code,
                         "got %s: %s" % (cm.exception.code(), cm.exception.details()))
        return cm.exception

    def stats(self):
        return self.rooms.Stats(pb.StatsRequest(), timeout=RPC_TIMEOUT)

    # -- (1) Publish --------------------------------------------------------

    def test_publish_offsets(self):
        room = "publish-room"
        datas = [b"one", b"two", b"\x00\xff binary", b"{\"json\":true}", b""]
        positions = [self.publish(room, d) for d in datas]
        epoch = positions[0].epoch
        self.assertTrue(epoch, "the epoch must not be empty")
        self.assertEqual([p.offset for p in positions], list(range(1, len(datas) + 1)))
        self.assertEqual({p.epoch for p in positions}, {epoch})

        # History agrees with the acks, payloads byte for byte.
        h = self.rooms.History(pb.HistoryRequest(room=room), timeout=RPC_TIMEOUT)
        self.assertEqual(h.position.epoch, epoch)
        self.assertEqual(h.position.offset, len(datas))
        self.assertEqual([m.data for m in h.messages], datas)
        self.assertEqual([m.position.offset for m in h.messages], list(range(1, len(datas) + 1)))
        self.assertTrue(all(m.room == room for m in h.messages))

        # Another room has its own offsets and epoch.
        other = self.publish("publish-other", b"x")
        self.assertEqual(other.offset, 1)

    # -- (2) Subscribe, live ------------------------------------------------

    def test_subscribe_live(self):
        room = "live"
        # A publisher identity with a google.protobuf.Struct travels through.
        info = struct_pb2.Struct()
        info.update({"name": "py", "n": 2})
        publisher = pb.ClientInfo(client_id="py-1", user_id="u1", info=info)
        first = self.publish(room, b"before")  # Not replayed: no `since`.

        sub = self.subscribe(pb.SubscribeRequest.RoomRequest(room=room))
        self.expect_recovery(sub, room, True, first.epoch, 1)

        datas = [b"m%d" % i for i in range(5)]
        for d in datas:
            self.publish(room, d, publisher=publisher)
        self.expect_messages(sub, room, first.epoch, 2, datas)
        # Check the extra fields on one more message.
        self.publish(room, b"last", publisher=publisher)
        m = self.next_of(sub, "message")
        self.assertEqual(m.data, b"last")
        self.assertEqual(m.publisher.client_id, "py-1")
        self.assertEqual(m.publisher.user_id, "u1")
        self.assertEqual(m.publisher.info["name"], "py")
        self.assertEqual(m.publisher.info["n"], 2)
        self.assertGreater(m.time.seconds, 1_600_000_000)
        sub.expect_nothing(0.3)

    def test_subscribe_new_room(self):
        # A room that does not exist yet: position offset 0, then offset 1 live.
        sub = self.subscribe(pb.SubscribeRequest.RoomRequest(room="fresh"))
        r = self.next_of(sub, "recovery")
        self.assertTrue(r.recovered)
        self.assertEqual(r.position.offset, 0)
        p = self.publish("fresh", b"first")
        self.assertEqual(p.offset, 1)
        if r.position.epoch:
            self.assertEqual(p.epoch, r.position.epoch)
        self.expect_messages(sub, "fresh", p.epoch, 1, [b"first"])

    # -- (3) Resume ---------------------------------------------------------

    def test_resume(self):
        room = "resume"
        epoch = self.publish(room, b"m1").epoch
        sub = self.subscribe(pb.SubscribeRequest.RoomRequest(room=room), name="first-sub")
        self.expect_recovery(sub, room, True, epoch, 1)
        for i in range(2, 7):
            self.publish(room, b"m%d" % i)
        self.expect_messages(sub, room, epoch, 2, [b"m2", b"m3", b"m4"])
        last = pb.Position(epoch=epoch, offset=4)
        sub.cancel()
        self.assertEqual(sub.code, grpc.StatusCode.CANCELLED)

        for i in range(7, 11):  # While disconnected.
            self.publish(room, b"m%d" % i)

        sub2 = self.subscribe(pb.SubscribeRequest.RoomRequest(room=room, since=last),
                              name="resumed-sub")
        # Exactly the missed messages (5..10, including the two the first
        # subscription had been sent but did not read), in order...
        self.expect_messages(sub2, room, epoch, 5, [b"m%d" % i for i in range(5, 11)])
        # ...then the marker at the last replayed position...
        self.expect_recovery(sub2, room, True, epoch, 10)
        # ...then live.
        self.publish(room, b"m11")
        self.expect_messages(sub2, room, epoch, 11, [b"m11"])
        sub2.expect_nothing(0.3)

    def test_resume_at_head(self):
        # Resuming from the current position replays nothing and is recovered.
        room = "resume-head"
        for i in range(3):
            p = self.publish(room, b"x%d" % i)
        sub = self.subscribe(pb.SubscribeRequest.RoomRequest(room=room, since=p))
        self.expect_recovery(sub, room, True, p.epoch, 3)
        self.publish(room, b"live")
        self.expect_messages(sub, room, p.epoch, 4, [b"live"])

    # -- (4) Resume with a wrong epoch -------------------------------------

    def test_resume_wrong_epoch(self):
        room = "epoch"
        for i in range(3):
            p = self.publish(room, b"e%d" % i)
        wrong = "not-" + p.epoch
        sub = self.subscribe(pb.SubscribeRequest.RoomRequest(
            room=room, since=pb.Position(epoch=wrong, offset=1)))
        # No replay: the very first response is the marker, recovered = false,
        # carrying the room's real position.
        self.expect_recovery(sub, room, False, p.epoch, 3)
        self.publish(room, b"live")
        self.expect_messages(sub, room, p.epoch, 4, [b"live"])
        sub.expect_nothing(0.3)

    # -- (5) PublishStream --------------------------------------------------

    def test_publish_stream(self):
        room = "pstream"
        requests = RequestQueue()
        call = self.rooms.PublishStream(requests, timeout=STREAM_DEADLINE)
        acks = StreamReader(call, "publish-stream")
        self.streams.append(acks)
        try:
            # Pipelined: all requests first, then the acks, one per request in order.
            ids = [101, 102, 103, 104, 105]
            for i in ids:
                requests.put(pb.PublishRequest(room=room, data=b"s%d" % i, id=i))
            got = [acks.next() for _ in ids]
            self.assertEqual([a.id for a in got], ids)
            for a in got:
                self.assertEqual(a.WhichOneof("result"), "position", _short(a))
            epoch = got[0].position.epoch
            self.assertTrue(epoch)
            self.assertEqual([a.position.epoch for a in got], [epoch] * len(ids))
            self.assertEqual([a.position.offset for a in got], [1, 2, 3, 4, 5])

            # An invalid room name gets an error ack, and the stream goes on.
            requests.put(pb.PublishRequest(room="bad room!", data=b"x", id=106))
            requests.put(pb.PublishRequest(room=room, data=b"s107", id=107))
            requests.put(pb.PublishRequest(room="", data=b"x", id=108))
            requests.put(pb.PublishRequest(room=room, data=b"s109", id=109))
            a106, a107, a108, a109 = (acks.next() for _ in range(4))
            self.assertEqual(a106.id, 106)
            self.assertEqual(a106.WhichOneof("result"), "error", _short(a106))
            self.assertEqual(a106.error.code, INVALID_ARGUMENT)
            self.assertTrue(a106.error.message)
            self.assertEqual(a107.id, 107)
            self.assertEqual(a107.WhichOneof("result"), "position", _short(a107))
            self.assertEqual((a107.position.epoch, a107.position.offset), (epoch, 6))
            self.assertEqual(a108.id, 108)
            self.assertEqual(a108.WhichOneof("result"), "error", _short(a108))
            self.assertEqual(a108.error.code, INVALID_ARGUMENT)
            self.assertEqual(a109.id, 109)
            self.assertEqual((a109.position.epoch, a109.position.offset), (epoch, 7))

            # One at a time, interleaved with reads.
            for i, offset in ((110, 8), (111, 9)):
                requests.put(pb.PublishRequest(room=room, data=b"s%d" % i, id=i))
                a = acks.next()
                self.assertEqual((a.id, a.position.offset), (i, offset))

            # Half-close: the stream ends OK after the last ack.
            requests.close()
            code, details = acks.end()
            self.assertEqual(code, grpc.StatusCode.OK, details)
        finally:
            requests.close()

        # What the stream published is in history, in order.
        h = self.rooms.History(pb.HistoryRequest(room=room), timeout=RPC_TIMEOUT)
        self.assertEqual([m.data for m in h.messages],
                         [b"s101", b"s102", b"s103", b"s104", b"s105", b"s107", b"s109",
                          b"s110", b"s111"])

    # -- (6) Error codes ----------------------------------------------------

    def test_error_codes(self):
        for bad in ("bad room!", "", "Upper:x", "ns:", "sp ace", "unknown-namespace:x"):
            with self.subTest(room=bad):
                self.assert_rpc_error(grpc.StatusCode.INVALID_ARGUMENT, self.rooms.Publish,
                                      pb.PublishRequest(room=bad, data=b"x"))
                self.assert_rpc_error(grpc.StatusCode.INVALID_ARGUMENT, self.rooms.History,
                                      pb.HistoryRequest(room=bad))

        room = "errors"
        for i in range(3):
            p = self.publish(room, b"x")
        self.assertEqual(p.offset, 3)
        # History since an offset past the end.
        self.assert_rpc_error(grpc.StatusCode.OUT_OF_RANGE, self.rooms.History,
                              pb.HistoryRequest(room=room,
                                                since=pb.Position(epoch=p.epoch, offset=4)))
        self.assert_rpc_error(grpc.StatusCode.OUT_OF_RANGE, self.rooms.History,
                              pb.HistoryRequest(room=room,
                                                since=pb.Position(epoch=p.epoch, offset=1000)))
        # At the end is fine (and empty).
        h = self.rooms.History(pb.HistoryRequest(room=room, since=p), timeout=RPC_TIMEOUT)
        self.assertEqual(len(h.messages), 0)
        self.assertEqual(h.position.offset, 3)
        # History since another epoch.
        self.assert_rpc_error(grpc.StatusCode.FAILED_PRECONDITION, self.rooms.History,
                              pb.HistoryRequest(room=room,
                                                since=pb.Position(epoch="x" + p.epoch, offset=1)))

        # Subscribe errors end the stream with the status (and nothing before it).
        sub = self.subscribe(pb.SubscribeRequest.RoomRequest(room="bad room!"), name="bad-sub")
        code, details = sub.end()
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, details)
        sub = self.subscribe(name="no-rooms-sub")
        code, details = sub.end()
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, details)
        sub = self.subscribe(pb.SubscribeRequest.RoomRequest(
            room=room, since=pb.Position(epoch=p.epoch, offset=4)), name="past-end-sub")
        code, details = sub.end()
        self.assertEqual(code, grpc.StatusCode.OUT_OF_RANGE, details)
        sub = self.subscribe(pb.SubscribeRequest.RoomRequest(room=room),
                             pb.SubscribeRequest.RoomRequest(room=room), name="dup-sub")
        code, details = sub.end()
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, details)

        # Disconnect needs exactly one of user_id and client_id.
        self.assert_rpc_error(grpc.StatusCode.INVALID_ARGUMENT, self.rooms.Disconnect,
                              pb.DisconnectRequest())

    # -- (7) Stats return to zero ------------------------------------------

    def wait_for_stats(self, what, deadline_s=10.0, **expected):
        """Polls Stats until every field in `expected` has its value."""
        deadline = time.monotonic() + deadline_s
        while True:
            s = self.stats()
            if all(getattr(s, k) == v for k, v in expected.items()):
                return s
            if time.monotonic() > deadline:
                self.fail("stats: %s not reached within %.0f s (want %s): %s"
                          % (what, deadline_s, expected, _short(s)))
            time.sleep(0.05)

    def wait_for_idle_stats(self, deadline_s=10.0):
        return self.wait_for_stats("return to zero", deadline_s, subscribe_streams=0,
                                   subscriptions=0, queued_events=0, queued_bytes=0)

    def test_stats_return_to_zero(self):
        self.wait_for_idle_stats()
        epoch = self.publish("stats-a", b"x").epoch

        # Several kinds of streams: a cancelled one, one cancelled with unread
        # messages queued, a multi-room one, one ended by an error, one
        # ended by its channel closing, and a PublishStream.
        s1 = self.subscribe(pb.SubscribeRequest.RoomRequest(room="stats-a"), name="s1")
        s2 = self.subscribe(pb.SubscribeRequest.RoomRequest(room="stats-a"),
                            pb.SubscribeRequest.RoomRequest(room="stats-b"), name="s2")
        s3 = self.subscribe(pb.SubscribeRequest.RoomRequest(
            room="stats-a", since=pb.Position(epoch=epoch, offset=0)), name="s3")
        self.expect_recovery(s1, "stats-a", True, epoch, 1)
        self.next_of(s2, "recovery")
        self.next_of(s2, "recovery")
        self.expect_messages(s3, "stats-a", epoch, 1, [b"x"])
        self.expect_recovery(s3, "stats-a", True, epoch, 1)
        bad = self.subscribe(pb.SubscribeRequest.RoomRequest(room="bad room!"), name="bad")
        self.assertEqual(bad.end()[0], grpc.StatusCode.INVALID_ARGUMENT)

        other_channel = grpc.insecure_channel(self.core.address)
        self.addCleanup(other_channel.close)
        other = StreamReader(pb_grpc.RoomsStub(other_channel).Subscribe(
            pb.SubscribeRequest(rooms=[pb.SubscribeRequest.RoomRequest(room="stats-b")]),
            timeout=STREAM_DEADLINE), "other-channel")
        self.streams.append(other)
        self.next_of(other, "recovery")

        requests = RequestQueue()
        ps = StreamReader(self.rooms.PublishStream(requests, timeout=STREAM_DEADLINE), "ps")
        self.streams.append(ps)
        requests.put(pb.PublishRequest(room="stats-a", data=b"y", id=1))
        self.assertEqual(ps.next().position.offset, 2)

        # Polled: the failed `bad` stream leaves the registry only after its
        # status has reached the client. stats-a: s1 s2 s3; stats-b: s2 other.
        s = self.wait_for_stats("4 open Subscribe streams", subscribe_streams=4, subscriptions=5)
        self.assertGreaterEqual(s.rooms, 2)
        self.assertGreaterEqual(s.messages_published_total, 2)

        # Leave messages unread on s2, then close everything.
        for i in range(20):
            self.publish("stats-a", b"z%d" % i)
        s1.cancel()
        s2.cancel()
        s3.cancel()
        other_channel.close()
        requests.close()
        self.assertEqual(ps.end()[0], grpc.StatusCode.OK)
        self.assertEqual(other.end()[0], grpc.StatusCode.CANCELLED)

        s = self.wait_for_idle_stats()
        self.assertEqual(s.presence_entries, 0)
        self.assertEqual(s.edge_links, 0)
        self.assertEqual(s.edge_clients, 0)
        self.assertEqual(s.slow_consumer_disconnects_total, 0)
        self.assertEqual(s.messages_published_total, 22)
        # Rooms keep their history: they still exist.
        self.assertGreaterEqual(s.rooms, 1)

    # -- (8) SIGTERM ---------------------------------------------------------

    def test_sigterm_exits_zero(self):
        self.publish("bye", b"x")
        rc = self.core.terminate_and_wait()
        self.assertIsNotNone(rc, "roomcast-core did not exit within %.0f s of SIGTERM"
                             % EXIT_TIMEOUT)
        self.assertEqual(rc, 0)

    def test_sigterm_with_open_subscription(self):
        room = "bye-sub"
        p = self.publish(room, b"x")
        sub = self.subscribe(pb.SubscribeRequest.RoomRequest(room=room))
        self.expect_recovery(sub, room, True, p.epoch, 1)
        started = time.monotonic()
        rc = self.core.terminate_and_wait()
        self.assertIsNotNone(rc, "roomcast-core did not exit within %.0f s of SIGTERM"
                             % EXIT_TIMEOUT)
        self.assertEqual(rc, 0)
        # The open Subscribe ends with UNAVAILABLE ("retry elsewhere").
        code, details = sub.end()
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE, details)
        # The stream is ended by the server, not by the grace period running out.
        self.assertLess(time.monotonic() - started, 4.5)


def main():
    global CORE_BINARY, grpc, pb, pb_grpc, struct_pb2
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--core-binary", required=True, help="path to roomcast-core")
    parser.add_argument("--stubs", required=True,
                        help="directory holding roomcast/v1/roomcast_pb2{,_grpc}.py")
    args, rest = parser.parse_known_args()
    CORE_BINARY = os.path.abspath(args.core_binary)
    if not os.access(CORE_BINARY, os.X_OK):
        parser.error("not an executable: %s" % CORE_BINARY)
    sys.path.insert(0, os.path.abspath(args.stubs))

    import grpc as grpc_module
    from google.protobuf import struct_pb2 as struct_module
    from roomcast.v1 import roomcast_pb2, roomcast_pb2_grpc
    grpc, pb, pb_grpc, struct_pb2 = grpc_module, roomcast_pb2, roomcast_pb2_grpc, struct_module
    print("python %s, grpcio %s, core %s" % (sys.version.split()[0], grpc.__version__,
                                             CORE_BINARY), flush=True)

    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
