import { type ELDHistogram, monitorEventLoopDelay } from 'node:perf_hooks';

/** Live counters of this process, read by heartbeats, /healthz and the step runner. */
export class Runtime {
  draining = false;
  inflight = 0;
  runningSteps = 0;
  readonly startedAt = new Date().toISOString();
  #seq = 0;
  #histogram: ELDHistogram;
  #lastCpu = process.cpuUsage();
  #lastCpuAt = process.hrtime.bigint();

  constructor(
    readonly nodeId: string,
    readonly version: string,
    readonly stepCapacity: number,
  ) {
    this.#histogram = monitorEventLoopDelay({ resolution: 20 });
    this.#histogram.enable();
  }

  nextSeq(): number {
    return ++this.#seq;
  }

  /** Mean event-loop delay above the sampling resolution since the last read, in ms. */
  eventLoopLagMs(reset = false): number {
    const mean = this.#histogram.mean / 1e6;
    const lag = Number.isFinite(mean) ? Math.max(0, mean - 20) : 0;
    if (reset) this.#histogram.reset();
    return Math.round(lag * 100) / 100;
  }

  /** CPU time used by this process since the last call, as a fraction of one core. */
  cpu(): number {
    const now = process.hrtime.bigint();
    const usage = process.cpuUsage(this.#lastCpu);
    const elapsedUs = Number(now - this.#lastCpuAt) / 1000;
    this.#lastCpu = process.cpuUsage();
    this.#lastCpuAt = now;
    return elapsedUs > 0 ? Math.round(((usage.user + usage.system) / elapsedUs) * 1000) / 1000 : 0;
  }

  close(): void {
    this.#histogram.disable();
  }
}
