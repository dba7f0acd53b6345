import { Gauge, type Registry } from 'prom-client';

/**
 * `omflow_build_info`, the same on every process of the cluster (Prometheus' build_info
 * convention): always 1, the labels say what runs where, so a dashboard can join any series
 * with the version and a mixed-version cluster shows during a rollout.
 */
export function registerBuildInfo(registry: Registry, labels: { role: 'booster' | 'agent' | 'server'; version: string | null; node: string }): void {
  const g = new Gauge({
    name: 'omflow_build_info',
    help: 'Always 1: the version, role and node of this process, and the Node.js running it',
    labelNames: ['version', 'role', 'node', 'nodejs'] as const,
    registers: [registry],
  });
  g.labels(labels.version ?? 'unknown', labels.role, labels.node, process.versions.node).set(1);
}
