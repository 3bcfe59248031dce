/** The bulkhead's own rules: a cap, first come first served, a bounded wait, and leaving on abort. */
import { Bulkhead, UpstreamBusyError } from '../../src/connectors/bulkhead';

test('slots go to waiters in arrival order, each handed over by a release', async () => {
  const b = new Bulkhead('u', 1, 5000);
  const first = await b.acquire();
  const order: number[] = [];
  const second = b.acquire().then((r) => (order.push(2), r));
  const third = b.acquire().then((r) => (order.push(3), r));
  first();
  (await second)();
  (await third)();
  expect(order).toEqual([2, 3]);
  expect(b.inFlight).toBe(0);
});

test('a waiter past maxWaitMs gets UpstreamBusyError and leaves the queue', async () => {
  const b = new Bulkhead('u', 1, 50);
  const held = await b.acquire();
  await expect(b.acquire()).rejects.toBeInstanceOf(UpstreamBusyError);
  held();
  expect(b.inFlight).toBe(0);
  const again = await b.acquire();
  expect(b.inFlight).toBe(1);
  again();
  again(); // a second release changes nothing
  expect(b.inFlight).toBe(0);
});

test('an aborted waiter leaves with the signal’s reason and takes no slot', async () => {
  const b = new Bulkhead('u', 1, 5000);
  const held = await b.acquire();
  const ctl = new AbortController();
  const waiting = b.acquire(ctl.signal);
  ctl.abort(new Error('client left'));
  await expect(waiting).rejects.toThrow('client left');
  held();
  expect(b.inFlight).toBe(0);
});

test('max 0 is no bulkhead', async () => {
  const b = new Bulkhead('u', 0, 0);
  await Promise.all(Array.from({ length: 100 }, () => b.acquire()));
  expect(b.inFlight).toBe(0);
});
