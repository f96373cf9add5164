import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classwiseNms, iou, nms, topK, type Candidate } from '../../services/lib/models/nms.js';

const box = (x1: number, y1: number, x2: number, y2: number, score: number, classId?: number): Candidate => ({ x1, y1, x2, y2, score, classId });

test('iou of identical, disjoint, touching and half-overlapping boxes', () => {
  assert.equal(iou(box(0, 0, 10, 10, 1), box(0, 0, 10, 10, 1)), 1);
  assert.equal(iou(box(0, 0, 10, 10, 1), box(20, 20, 30, 30, 1)), 0);
  assert.equal(iou(box(0, 0, 10, 10, 1), box(10, 0, 20, 10, 1)), 0);
  // 10x10 and a 10x10 shifted by 5: intersection 50, union 150
  assert.ok(Math.abs(iou(box(0, 0, 10, 10, 1), box(5, 0, 15, 10, 1)) - 1 / 3) < 1e-12);
  // one inside the other: 25 / 100
  assert.equal(iou(box(0, 0, 10, 10, 1), box(0, 0, 5, 5, 1)), 0.25);
  assert.equal(iou(box(0, 0, 0, 0, 1), box(0, 0, 0, 0, 1)), 0, 'empty boxes never overlap');
});

test('nms keeps the best of each overlapping group, best first', () => {
  const kept = nms([
    box(0, 0, 10, 10, 0.8),
    box(1, 1, 11, 11, 0.9), // overlaps the first heavily: wins
    box(50, 50, 60, 60, 0.5),
    box(5, 0, 15, 10, 0.7), // iou with the winner ~0.39: kept at threshold 0.45
  ], 0.45);
  assert.deepEqual(kept.map((k) => k.score), [0.9, 0.7, 0.5]);
});

test('nms threshold is strict and maxOut caps the result', () => {
  const a = box(0, 0, 10, 10, 0.9);
  const b = box(5, 0, 15, 10, 0.8); // iou 1/3
  assert.equal(nms([a, b], 0.34).length, 2);
  assert.equal(nms([a, b], 0.3).length, 1);
  assert.equal(nms([a, b, box(100, 100, 110, 110, 0.1)], 0.5, 2).length, 2);
  assert.deepEqual(nms([], 0.5), []);
});

test('class-wise nms does not let one class suppress another', () => {
  const dog = box(0, 0, 100, 100, 0.9, 16);
  const cat = box(2, 2, 100, 100, 0.4, 15);
  const dog2 = box(3, 3, 100, 100, 0.5, 16);
  const kept = classwiseNms([dog, cat, dog2], 0.45);
  assert.deepEqual(kept.map((k) => [k.classId, k.score]), [[16, 0.9], [15, 0.4]]);
  assert.equal(nms([dog, cat, dog2], 0.45).length, 1, 'plain nms would merge them');
  assert.equal(classwiseNms([dog, cat, dog2], 0.45, 1).length, 1);
});

test('topK returns indices above the threshold, best first', () => {
  assert.deepEqual(topK([0.1, 0.9, 0.5, 0.7, 0.3], 0.4, 10), [1, 3, 2]);
  assert.deepEqual(topK([0.1, 0.9, 0.5, 0.7, 0.3], 0.4, 2), [1, 3]);
  assert.deepEqual(topK(new Float32Array(0), 0, 5), []);
});
