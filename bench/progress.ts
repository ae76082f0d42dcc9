/**
 * A progress bar on stderr: redrawn in place on a terminal, one line per
 * tenth of the work otherwise (CI logs).
 */
export class Progress {
  private done = 0;
  private lastDecile = -1;
  private readonly started = Date.now();
  private readonly tty = Boolean(process.stderr.isTTY);
  private label = '';

  constructor(private total: number) {}

  /** Adjusts the amount of work when a phase turns out larger or smaller than planned. */
  grow(units: number): void {
    this.total = Math.max(this.done, this.total + units);
  }

  phase(label: string): void {
    this.label = label;
    this.draw();
  }

  step(units = 1): void {
    this.done = Math.min(this.total, this.done + units);
    this.draw();
  }

  note(message: string): void {
    if (this.tty) process.stderr.write('\r\x1b[2K');
    process.stderr.write(`[bench] ${message}\n`);
    this.draw();
  }

  finish(): void {
    this.done = this.total;
    this.draw();
    if (this.tty) process.stderr.write('\n');
  }

  private draw(): void {
    const fraction = this.total > 0 ? this.done / this.total : 0;
    const elapsed = (Date.now() - this.started) / 1000;
    const eta = fraction > 0.02 ? Math.round((elapsed / fraction) * (1 - fraction)) : undefined;
    const width = 30;
    const filled = Math.round(fraction * width);
    const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}%` +
      ` ${Math.round(elapsed)}s${eta === undefined ? '' : ` (about ${eta}s left)`}  ${this.label}`;
    if (this.tty) {
      process.stderr.write(`\r\x1b[2K${line.slice(0, (process.stderr.columns || 120) - 1)}`);
      return;
    }
    const decile = Math.floor(fraction * 10);
    if (decile !== this.lastDecile) {
      this.lastDecile = decile;
      process.stderr.write(`[bench] ${line}\n`);
    }
  }
}
