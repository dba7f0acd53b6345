import { describe, expect, it } from 'vitest';
import { databaseArea } from '../../common/config/areas/database.js';
import { loadConfig } from '../../common/config/load.js';
import { resolveTarget } from '../../common/db/create-database.js';
import { parseDatabaseUrl } from '../../common/db/url.js';

function ok(url: string) {
  const r = parseDatabaseUrl(url);
  if (!r.ok) throw new Error(`${url}: ${r.message}`);
  return r.value;
}

function refused(url: string) {
  const r = parseDatabaseUrl(url);
  if (r.ok) throw new Error(`${url} was accepted`);
  return r;
}

describe('OMFLOW_DB_URL parsing', () => {
  it('a single-host URL keeps host, port, database and credentials; target_session_attrs defaults to any', () => {
    const t = ok('postgres://omflow:s%40cret@db.example:6432/omflow');
    expect(t).toMatchObject({ client: 'postgres', host: 'db.example', port: 6432, database: 'omflow', user: 'omflow', password: 's@cret' });
    expect(t.hosts).toEqual([{ host: 'db.example', port: 6432 }]);
    expect(t.targetSessionAttrs).toBe('any');
  });

  it('a libpq multi-host URL lists every host in order, each with its own port or the default', () => {
    const t = ok('postgres://u:pw@h1:5432,h2:5433,h3/db?target_session_attrs=read-write');
    expect(t.hosts).toEqual([
      { host: 'h1', port: 5432 },
      { host: 'h2', port: 5433 },
      { host: 'h3', port: undefined },
    ]);
    expect(t).toMatchObject({ host: 'h1', port: 5432, database: 'db', user: 'u', password: 'pw', targetSessionAttrs: 'read-write' });
  });

  it('IPv6 hosts in brackets work inside a list', () => {
    expect(ok('postgresql://u:p@[::1]:5432,[fd00::2]:5433/db').hosts).toEqual([
      { host: '::1', port: 5432 },
      { host: 'fd00::2', port: 5433 },
    ]);
  });

  it('accepts any, read-write and primary', () => {
    for (const attrs of ['any', 'read-write', 'primary']) expect(ok(`postgres://u:p@h1,h2/db?target_session_attrs=${attrs}`).targetSessionAttrs).toBe(attrs);
  });

  it.each([
    ['postgres://u:p@h1,h2/db?target_session_attrs=standby', 'COMMON_ERR_DB_URL_UNSUPPORTED', /target_session_attrs=standby/],
    ['postgres://u:p@h1,h2/db?target_session_attrs=bogus', 'COMMON_ERR_DB_URL_UNSUPPORTED', /supported: any, read-write, primary/],
    ['mysql://u:p@m1:3306,m2:3306/db', 'COMMON_ERR_DB_URL_UNSUPPORTED', /MaxScale, HAProxy or a Galera virtual IP/],
    ['mysql://u:p@m1/db?target_session_attrs=read-write', 'COMMON_ERR_DB_URL_UNSUPPORTED', /only PostgreSQL/],
    ['postgres://u:p@h1,,h2/db', 'COMMON_ERR_DB_URL_INVALID', /empty host/],
    ['postgres://u:p@h1:5432,h2:99999/db', 'COMMON_ERR_DB_URL_INVALID', /malformed port "99999"/],
    ['postgres://u:p@h1,h2:x/db', 'COMMON_ERR_DB_URL_INVALID', /malformed port "x"/],
    ['postgres://u:p@h1,h2/', 'COMMON_ERR_DB_URL_INVALID', /no database name/],
    ['postgres://u:p@h1,h2/db?host=%2Ftmp', 'COMMON_ERR_DB_URL_UNSUPPORTED', /host list with \?host=/],
    ['sqlite:///tmp/x.db', 'COMMON_ERR_DB_SQLITE_REFUSED', /SQLite is refused/],
    ['nope://x/db', 'COMMON_ERR_DB_URL_INVALID', /unknown scheme/],
  ])('%s is refused with %s', (url, code, message) => {
    const r = refused(url);
    expect(r.code).toBe(code);
    expect(r.message).toMatch(message);
    expect(r.message).toContain(code);
  });

  it('the config loader reports a bad multi-host URL under OMFLOW_DB_URL, with the stable code', () => {
    let problems: { key: string; message: string }[] = [];
    try {
      loadConfig([databaseArea], { env: { OMFLOW_DB_URL: 'mariadb://u:p@a,b/db' } });
    } catch (err) {
      problems = (err as { details: { problems: { key: string; message: string }[] } }).details.problems;
    }
    expect(problems.map((p) => p.key)).toEqual(['OMFLOW_DB_URL']);
    expect(problems[0].message).toContain('COMMON_ERR_DB_URL_UNSUPPORTED');
  });

  it('OMFLOW_DB_OUTAGE_GRACE_MS defaults to 10 s and resolveTarget keeps the host list', () => {
    const cfg = loadConfig([databaseArea], { env: { OMFLOW_DB_URL: 'postgres://u:p@a:1,b:2/db?target_session_attrs=read-write' } });
    expect(cfg.database.outageGraceMs).toBe(10_000);
    const t = resolveTarget(cfg.database);
    expect(t.hosts).toEqual([
      { host: 'a', port: 1 },
      { host: 'b', port: 2 },
    ]);
    expect(t.targetSessionAttrs).toBe('read-write');
  });
});
