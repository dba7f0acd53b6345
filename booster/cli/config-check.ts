import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { delimiter, join } from 'node:path';
import {
  CAP,
  type CheckResult,
  checkBooster,
  checkDatabase,
  checkWritable,
  effectiveCapabilities,
  hasCapability,
  type RoleCheck,
} from '../../common/cli/config-command.js';
import { boosterArea } from '../../common/config/areas/booster.js';
import { clusterArea } from '../../common/config/areas/cluster.js';
import { databaseArea } from '../../common/config/areas/database.js';
import { loadCertificate } from '../data-plane/tls-certificate.js';

/** Days before a certificate's end at which the check warns (the shipped alert fires at 21). */
const CERT_WARN_DAYS = 30;

/**
 * `omflow config check` of a Booster configuration, beyond the keys themselves: the certificate
 * and key (the Booster refuses to start with a broken pair), the access-log file, the database,
 * the HA Booster, the VIP's interface, tools and capabilities, privileged ports.
 */
export const configCheck: RoleCheck<readonly [typeof clusterArea, typeof databaseArea, typeof boosterArea]> = {
  areas: [clusterArea, databaseArea, boosterArea],
  async run(c, env) {
    const b = c.booster;
    const out: CheckResult[] = [];
    if (b.tlsCertFile && b.tlsKeyFile) out.push(checkCertificate(b.tlsCertFile, b.tlsKeyFile));
    if (b.accessLog !== 'off' && b.accessLogFile) out.push(checkWritable('access log', b.accessLogFile, 'file'));
    const caps = effectiveCapabilities();
    for (const [name, port] of [
      ['OMFLOW_BOOSTER_PORT', b.port],
      ['OMFLOW_BOOSTER_HTTP_REDIRECT_PORT', b.httpRedirectPort],
    ] as const)
      if (port !== undefined && port > 0 && port < unprivilegedPortStart() && !hasCapability(CAP.NET_BIND_SERVICE, caps))
        out.push({
          level: 'fail',
          name,
          detail: `port ${port} needs CAP_NET_BIND_SERVICE (AmbientCapabilities=CAP_NET_BIND_SERVICE in a unit drop-in), which this process does not have`,
        });
    if (b.vip && b.vipInterface) out.push(...checkVip(b.vip, b.vipInterface, caps, env.PATH));
    if (b.workers > availableParallelism())
      out.push({
        level: 'warn',
        name: 'OMFLOW_BOOSTER_WORKERS',
        detail: `${b.workers} data-plane workers on ${availableParallelism()} cores: more processes than cores`,
      });
    out.push(await checkDatabase(c.database));
    if (b.peerUrl) {
      if (b.advertiseUrl && b.peerUrl === b.advertiseUrl)
        out.push({
          level: 'fail',
          name: 'OMFLOW_BOOSTER_PEER_URL',
          detail: 'is this Booster itself (OMFLOW_BOOSTER_ADVERTISE_URL): give the other one of the pair',
        });
      else out.push(await checkBooster('HA Booster', b.peerUrl, { secret: c.cluster.secret, nodeId: c.cluster.nodeId }));
    }
    return out;
  },
};

function checkCertificate(certFile: string, keyFile: string): CheckResult {
  try {
    const cert = loadCertificate({ certFile, keyFile });
    const days = Math.floor((Date.parse(cert.validTo) - Date.now()) / 86_400_000);
    const detail = `${cert.subject}, valid until ${cert.validTo} (${days} days), key matches`;
    return { level: days < CERT_WARN_DAYS ? 'warn' : 'ok', name: 'TLS certificate', detail: days < CERT_WARN_DAYS ? `${detail}: renew it soon` : detail };
  } catch (err) {
    return { level: 'fail', name: 'TLS certificate', detail: (err as Error).message };
  }
}

function unprivilegedPortStart(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim()) || 1024;
  } catch {
    return 1024;
  }
}

function onPath(cmd: string, path = '/usr/sbin:/usr/bin:/sbin:/bin'): boolean {
  return path.split(delimiter).some((d) => d && existsSync(join(d, cmd)));
}

/** What the active needs to carry the VIP (vip-owner.ts): the interface, `ip` and `arping`, CAP_NET_ADMIN and CAP_NET_RAW. */
function checkVip(vip: string, iface: string, caps: bigint, path: string | undefined): CheckResult[] {
  const name = `VIP ${vip} on ${iface}`;
  const missing: string[] = [];
  if (!existsSync(join('/sys/class/net', iface))) missing.push(`no interface ${iface} on this host`);
  for (const tool of ['ip', 'arping']) if (!onPath(tool, path)) missing.push(`\`${tool}\` not found on PATH (iproute2, iputils-arping)`);
  for (const [cap, label] of [
    [CAP.NET_ADMIN, 'CAP_NET_ADMIN'],
    [CAP.NET_RAW, 'CAP_NET_RAW'],
  ] as const)
    if (!hasCapability(cap, caps)) missing.push(`${label} missing (see the operator guide's vip.conf drop-in)`);
  return missing.length === 0
    ? [{ level: 'ok', name, detail: 'interface present, ip and arping found, CAP_NET_ADMIN and CAP_NET_RAW held' }]
    : missing.map((detail) => ({ level: 'fail' as const, name, detail }));
}
