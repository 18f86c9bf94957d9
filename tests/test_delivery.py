"""The delivery pipeline on a fake clock: buffer, backoff, answers, writer decisions."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet import task
from twisted.trial import unittest

from buildbot_stats.counters import DeliveryCounters
from buildbot_stats.delivery import sender as S
from buildbot_stats.delivery.buffer import ChunkBuffer
from buildbot_stats.delivery.retry import Backoff
from buildbot_stats.delivery.retry import WriteOptions
from buildbot_stats.delivery.writer import BatchWriter


class Classify(unittest.TestCase):

    def test_answers(self):
        c = S.classify
        self.assertEqual(c(204, b'', None, 0).kind, S.ACCEPTED)
        o = c(400, b'{"error":"partial write: field type conflict: ... dropped=3"}', None, 0)
        self.assertEqual((o.kind, o.rejected), (S.PARTIAL, 3))
        self.assertEqual(c(400, b'{"error":"unable to parse"}', None, 0).kind, S.BAD_REQUEST)
        self.assertEqual(c(413, b'', None, 0).kind, S.TOO_LARGE)
        self.assertEqual(c(401, b'', None, 0).kind, S.AUTH)
        self.assertEqual(c(403, b'', None, 0).kind, S.AUTH)
        o = c(404, b'{"error":"database not found: \\"x\\""}', None, 0)
        self.assertEqual((o.kind, o.database_not_found), (S.NOT_FOUND, True))
        self.assertFalse(c(404, b'page not found', None, 0).database_not_found)
        o = c(503, b'busy', b'7', 0)
        self.assertEqual((o.kind, o.retry_after, o.message), (S.RETRY, 7.0, 'HTTP 503: busy'))
        self.assertEqual(c(429, b'', None, 0).kind, S.RETRY)
        self.assertEqual(c(500, b'', None, 0).kind, S.RETRY)
        self.assertEqual(c(302, b'', None, 0).kind, S.RETRY)

    def test_retry_after_forms(self):
        self.assertEqual(S.parseRetryAfter(b'12', 0), 12.0)
        self.assertEqual(S.parseRetryAfter('Wed, 21 Oct 2015 07:28:00 GMT', 1445412470.0),
                         10.0)
        self.assertIsNone(S.parseRetryAfter(b'soon', 0))
        self.assertIsNone(S.parseRetryAfter(None, 0))


class BackoffTest(unittest.TestCase):

    def test_exponential_capped_with_jitter(self):
        o = WriteOptions(retry_interval=1.0, exponential_base=2.0, max_retry_delay=10.0,
                         jitter=0.5)
        b = Backoff(o, random_fraction=lambda: 0.0)
        self.assertEqual([b.delay(n) for n in (1, 2, 3, 4, 5, 100000)],
                         [1.0, 2.0, 4.0, 8.0, 10.0, 10.0])
        b = Backoff(o, random_fraction=lambda: 1.0)
        self.assertEqual(b.delay(3), 2.0)
        self.assertEqual(b.delay(3, retry_after=3.0), 3.0)
        self.assertEqual(b.delay(3, retry_after=3600.0), 10.0)

    def test_option_problems_name_the_value(self):
        self.assertEqual(WriteOptions().problems(), [])
        problems = WriteOptions(batch_size=0, jitter=1.5, max_retries=-1,
                                timeout='x').problems()
        self.assertEqual(len(problems), 4, problems)
        self.assertIn("batch_size must be a positive integer, got 0", problems)
        self.assertIn("buffer_limit (10) must be at least batch_size (20)",
                      WriteOptions(buffer_limit=10, batch_size=20).problems())


class BufferTest(unittest.TestCase):

    def test_full_drops_oldest_chunks(self):
        dropped = []
        b = ChunkBuffer(batch_size=2, limit=4, on_drop=dropped.append)
        for i in range(7):
            b.add(b'%d' % i)
        self.assertEqual([c.lines for c in dropped], [[b'0', b'1'], [b'2', b'3']])
        self.assertEqual(len(b), 3)  # never more than the limit
        self.assertEqual(b.takeFirst().lines, [b'4', b'5'])
        self.assertEqual([c.lines for c in b.takeAll()], [[b'6']])
        self.assertEqual(len(b), 0)


class FakeSender:
    """Answers each write with the next scripted Outcome (or leaves it hanging)."""

    def __init__(self):
        self.bodies = []
        self.script = []
        self.pending = []

    def write(self, body):
        self.bodies.append(body)
        d = defer.Deferred(lambda d: d.callback(S.Outcome(S.RETRY, message='cancelled')))
        if self.script:
            answer = self.script.pop(0)
            if answer is not None:
                d.callback(answer(body) if callable(answer) else answer)
                return d
        self.pending.append(d)
        return d


OK = S.Outcome(S.ACCEPTED, 204)


class WriterTest(unittest.TestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.sender = FakeSender()
        self.counters = DeliveryCounters()

    def makeWriter(self, **options):
        options.setdefault('jitter', 0.0)
        self.options = WriteOptions(**options)
        w = BatchWriter(self.sender, self.options, self.counters, self.clock, 'test')
        w.start()
        return w

    def add(self, w, n, start=0):
        for i in range(start, start + n):
            w.add(b'm v=%di %d' % (i, i))

    def test_batches_on_size_and_interval(self):
        self.sender.script = [OK] * 10
        w = self.makeWriter(batch_size=3, flush_interval=1.0)
        self.add(w, 7)
        self.assertEqual(len(self.sender.bodies), 2)
        self.assertEqual(self.sender.bodies[0], b'm v=0i 0\nm v=1i 1\nm v=2i 2')
        self.clock.advance(1.0)
        self.assertEqual(len(self.sender.bodies), 3)
        self.assertEqual(self.counters.asDict(), {
            'added': 7, 'written': 7, 'rejected': 0, 'dropped': 0, 'retries': 0,
            'pending': 0})

    def test_retry_with_backoff_then_success_in_order(self):
        fail = S.Outcome(S.RETRY, 500, 'HTTP 500')
        self.sender.script = [fail, fail, fail, OK, OK]
        w = self.makeWriter(batch_size=2, retry_interval=1.0, max_retry_delay=3.0)
        self.add(w, 4)
        self.assertEqual(len(self.sender.bodies), 1)
        self.clock.advance(0.99)
        self.assertEqual(len(self.sender.bodies), 1)
        self.clock.advance(0.01)   # 1 s after the first failure
        self.assertEqual(len(self.sender.bodies), 2)
        self.clock.advance(2.0)    # then 2 s
        self.assertEqual(len(self.sender.bodies), 3)
        self.clock.advance(2.99)   # then 4 s capped to 3 s
        self.assertEqual(len(self.sender.bodies), 3)
        self.clock.advance(0.01)
        self.assertEqual(len(self.sender.bodies), 5)
        self.assertEqual(self.sender.bodies[3], self.sender.bodies[0])
        self.assertEqual(self.sender.bodies[4], b'm v=2i 2\nm v=3i 3')
        self.assertEqual((self.counters.written, self.counters.retries,
                          self.counters.pending), (4, 3, 0))

    def test_retry_after_is_honoured_and_capped(self):
        self.sender.script = [S.Outcome(S.RETRY, 503, 'HTTP 503', retry_after=30.0),
                              S.Outcome(S.RETRY, 503, 'HTTP 503', retry_after=9999.0), OK]
        w = self.makeWriter(max_retry_delay=60.0)
        self.add(w, 1)
        self.clock.advance(1.0)     # sent at t=1, answered "retry after 30 s"
        self.assertEqual(len(self.sender.bodies), 1)
        self.clock.advance(29.9)
        self.assertEqual(len(self.sender.bodies), 1)
        self.clock.advance(0.1)
        self.assertEqual(len(self.sender.bodies), 2)
        self.clock.advance(59.9)
        self.assertEqual(len(self.sender.bodies), 2)
        self.clock.advance(0.1)
        self.assertEqual(self.counters.written, 1)

    def test_413_splits_until_it_fits(self):
        def answer(body):
            lines = body.count(b'\n') + 1
            return OK if lines <= 2 else S.Outcome(S.TOO_LARGE, 413, 'HTTP 413')
        self.sender.script = [answer] * 20
        w = self.makeWriter(batch_size=8)
        self.add(w, 8)
        self.assertEqual([b.count(b'\n') + 1 for b in self.sender.bodies],
                         [8, 4, 2, 2, 4, 2, 2])
        self.assertEqual((self.counters.written, self.counters.pending), (8, 0))

    def test_400_without_count_isolates_the_bad_line(self):
        def answer(body):
            if b'v=5i' in body:
                return S.Outcome(S.BAD_REQUEST, 400, 'HTTP 400: unable to parse')
            return OK
        self.sender.script = [answer] * 20
        w = self.makeWriter(batch_size=8)
        self.add(w, 8)
        self.assertEqual((self.counters.written, self.counters.rejected,
                          self.counters.pending), (7, 1, 0))

    def test_auth_error_keeps_points_and_retries_slowly(self):
        auth = S.Outcome(S.AUTH, 401, 'HTTP 401: authorization failed')
        self.sender.script = [auth, auth, OK]
        w = self.makeWriter(slow_retry_interval=60.0)
        self.add(w, 3)
        self.clock.advance(1.0)
        self.assertEqual(len(self.sender.bodies), 1)
        self.clock.advance(59.0)
        self.assertEqual(len(self.sender.bodies), 1)
        self.clock.advance(1.0)
        self.assertEqual(len(self.sender.bodies), 2)
        self.clock.advance(60.0)
        self.assertEqual((self.counters.written, self.counters.pending), (3, 0))

    def test_max_retries_drops_and_counts(self):
        fail = S.Outcome(S.RETRY, 500, 'HTTP 500')
        self.sender.script = [fail] * 3 + [OK]
        w = self.makeWriter(max_retries=2, retry_interval=1.0, max_retry_delay=1.0)
        self.add(w, 2)
        self.clock.advance(1.0)  # first batch: sealed and sent, fails
        self.clock.advance(1.0)
        self.clock.advance(1.0)
        self.assertEqual((self.counters.dropped, self.counters.pending), (2, 0))

    def test_buffer_full_while_down_drops_oldest(self):
        w = self.makeWriter(batch_size=10, buffer_limit=30, max_in_flight=1)
        self.add(w, 100)   # the first batch hangs in flight, the rest piles up
        self.assertEqual(len(self.sender.pending), 1)
        self.assertEqual(self.counters.dropped, 60)
        self.assertEqual(self.counters.pending, 40)  # 10 in flight + 30 buffered
        self.sender.script = [OK] * 10
        self.sender.pending.pop().callback(OK)
        self.clock.advance(1.0)
        self.assertEqual(self.counters.written, 40)
        # the newest were kept
        self.assertIn(b'm v=99i 99', self.sender.bodies[-1])

    def test_two_in_flight_each_batch_accounted_once(self):
        w = self.makeWriter(batch_size=10, buffer_limit=30)  # max_in_flight=2, the default
        self.add(w, 100)   # two batches hang in flight, the rest piles up
        self.assertEqual(len(self.sender.pending), 2)
        self.assertEqual(self.counters.dropped, 50)
        self.assertEqual(self.counters.pending, 50)  # 20 in flight + 30 buffered
        # the second answers first, then the first fails: it is kept, tried again
        first, second = self.sender.pending
        self.sender.pending = []
        second.callback(OK)
        self.assertEqual(len(self.sender.pending), 1)  # the next batch took its place
        first.callback(S.Outcome(S.RETRY, 500, 'HTTP 500'))
        self.assertEqual((self.counters.written, self.counters.retries), (10, 1))
        # while the retry waits, nothing new is sent; then both slots work again
        self.assertEqual(len(self.sender.pending), 1)
        self.sender.script = [OK] * 10
        self.sender.pending.pop().callback(OK)
        self.clock.advance(1.0)
        self.assertEqual(self.counters.asDict(), {
            'added': 100, 'written': 50, 'rejected': 0, 'dropped': 50, 'retries': 1,
            'pending': 0})
        # the two batches in flight and the newest 30 (the failed one among them)
        sent = {line for body in self.sender.bodies for line in body.split(b'\n')}
        self.assertEqual(sent, {b'm v=%di %d' % (i, i) for i in [*range(20), *range(70, 100)]})

    def test_two_failing_in_flight_share_one_retry_timer(self):
        fail = S.Outcome(S.RETRY, 503, 'HTTP 503')
        w = self.makeWriter(batch_size=2, retry_interval=1.0)
        self.add(w, 4)
        self.assertEqual(len(self.sender.pending), 2)
        for d in list(self.sender.pending):
            self.sender.pending.remove(d)
            d.callback(fail)
        self.assertEqual((self.counters.retries, self.counters.pending), (2, 4))
        self.assertEqual(len(self.clock.getDelayedCalls()) - 2, 1)  # + flush and report
        self.sender.script = [OK, OK]
        self.clock.advance(1.0)
        self.assertEqual((self.counters.written, self.counters.pending), (4, 0))
        self.assertEqual(w.pendingLines, 0)

    @defer.inlineCallbacks
    def test_stop_is_bounded_when_server_hangs_and_counts_what_is_left(self):
        w = self.makeWriter(stop_timeout=5.0, batch_size=10)
        self.add(w, 25)
        d = w.stop()
        self.assertNoResult(d)
        self.clock.advance(5.0)
        yield d
        self.assertEqual((self.counters.written, self.counters.dropped,
                          self.counters.pending), (0, 25, 0))

    @defer.inlineCallbacks
    def test_flush_retries_now_and_reports(self):
        self.sender.script = [S.Outcome(S.RETRY, 500, 'HTTP 500'), OK]
        w = self.makeWriter(retry_interval=100.0, max_retry_delay=100.0)
        self.add(w, 1)
        self.clock.advance(1.0)
        self.assertEqual(len(self.sender.bodies), 1)
        ok = yield w.flush(timeout=1.0)
        self.assertTrue(ok)
        self.assertEqual(self.counters.written, 1)


class CreatingAtStop(unittest.TestCase):

    def test_a_creation_under_way_at_stop_leaves_no_timer(self):
        clock = task.Clock()
        sender = FakeSender()
        sender.script = [S.Outcome(S.NOT_FOUND, 404, 'HTTP 404: database not found',
                                   database_not_found=True)]
        creating = []

        def create():
            # as the sender answers a cancelled request: a failure, never an error
            d = defer.Deferred(lambda d: d.callback(False))
            creating.append(d)
            return d
        w = BatchWriter(sender, WriteOptions(jitter=0.0), DeliveryCounters(), clock, 'test',
                        create_database=create)
        w.start()
        w.add(b'm v=1i 1')
        clock.advance(1.0)
        self.assertEqual(len(creating), 1)
        stopping = w.stop(timeout=0)
        clock.advance(0)
        self.successResultOf(stopping)
        self.assertTrue(creating[0].called)
        self.assertEqual(clock.getDelayedCalls(), [])
