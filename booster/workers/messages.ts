import type { BoosterConfig, ClusterConfig } from '../config.js';
import type { StatsDelta } from '../metrics.js';
import type { TableMirror } from '../server-table/mirrored-table.js';

/**
 * What the primary and its data-plane workers say to each other over node:cluster's IPC channel
 * (ADR 0010): the primary pushes its state, a worker reports its counts and passive failures.
 */
/** The primary's view as a worker needs it, pushed on every change. */
export interface WorkerState {
  seq: number;
  serves: boolean;
  activeUrl: string | null;
  stopping: boolean;
  allowsDistribution: boolean;
  epoch: number;
  table: TableMirror;
}

export type ToWorker =
  | {
      type: 'init';
      index: number;
      workers: number;
      /** The port to share (never 0: see WorkerPool.start). */
      port: number;
      config: { cluster: ClusterConfig; booster: BoosterConfig };
      /** The primary's loopback listener for /_booster/. */
      controlUrl: string;
      state: WorkerState;
    }
  | { type: 'state'; state: WorkerState; ack: boolean }
  /** Report now (a metrics scrape wants every worker's counts). */
  | { type: 'report' }
  | { type: 'stop' };

export type FromWorker =
  | { type: 'ready' }
  | { type: 'listening'; port: number }
  /** The listener could not open (port taken, certificate unusable): the worker exits. */
  | { type: 'failed'; code: string; message: string }
  | { type: 'ack'; seq: number }
  | {
      type: 'report';
      inflight: [string, number][];
      /** Each server's adaptive concurrency limit in this worker (server-table/concurrency-limit.ts). */
      limits: [string, number][];
      stats: [string, StatsDelta][];
      retries: [string, number][];
      /** Requests shed under database pressure since the last report, and the admitted share now (ADR 0011). */
      shed: number;
      admitShare: number;
    }
  | { type: 'passive'; id: string; failure: boolean; weight: number }
  | { type: 'stopped' };

/** How often a worker reports in-flight counts and statistics to the primary. */
export const WORKER_REPORT_MS = 100;
