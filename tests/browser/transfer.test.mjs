// The download bookkeeping of web/transfer.js (plain JavaScript, no browser needed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Transfer } from '../../web/transfer.js';

test('transfer speed and eta', () => {
  const transfer = new Transfer(100_000, 2_000, 0);
  assert.deepEqual([transfer.speed, transfer.eta], [undefined, undefined]);
  transfer.advance(1_000, 1000);
  transfer.advance(1_000, 2000);
  assert.equal(transfer.done, 4_000);
  assert.equal(transfer.speed, 1_000);
  assert.equal(transfer.eta, 96);
  // Only the last 5 s count: a faster stretch shows at once.
  for (let second = 3; second <= 8; second += 1) transfer.advance(500 * second, second * 1000);
  assert.ok(Math.abs(transfer.speed - 3_000) < 1, String(transfer.speed));
  transfer.advance(Number.MAX_SAFE_INTEGER, 9000);
  assert.deepEqual([transfer.done, transfer.eta], [100_000, 0]);
});

test('cached bytes count as done, never past the total', () => {
  const transfer = new Transfer(10, 50, 0);
  assert.deepEqual([transfer.done, transfer.eta], [10, 0]);
});
