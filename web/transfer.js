// A download's progress, where the bytes arrive: done of total, the speed over the last few
// seconds and the time left at that speed. Times in milliseconds (`performance.now()`).

/** Speed is measured over this much recent time. */
const SPEED_WINDOW_MS = 5000;

export class Transfer {
  /** A download of `total` bytes of which `done` are already here (cached), starting `now`. */
  constructor(total, done, now) {
    this.total = total;
    this.done = Math.min(done, total);
    this.samples = [[now, this.done]];
  }

  /** `bytes` more arrived by `now`. */
  advance(bytes, now) {
    this.done = Math.min(this.done + bytes, this.total);
    this.samples.push([now, this.done]);
    while (this.samples.length > 2 && now - this.samples[0][0] > SPEED_WINDOW_MS) this.samples.shift();
  }

  /** Bytes per second over the window; undefined before two samples a moment apart. */
  get speed() {
    const [[t0, b0], [t1, b1]] = [this.samples[0], this.samples[this.samples.length - 1]];
    return t1 - t0 >= 1 ? ((b1 - b0) * 1000) / (t1 - t0) : undefined;
  }

  /** Seconds left at the current speed; undefined when unknown, 0 when done. */
  get eta() {
    const left = this.total - this.done;
    if (left === 0) return 0;
    const speed = this.speed;
    return speed > 0 ? left / speed : undefined;
  }
}
