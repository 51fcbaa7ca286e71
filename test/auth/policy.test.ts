import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DfsError } from '../../src/errors/index.ts';
import { authorize, authorizeOperation, checksFor, GrantTable, parseGrant, policyView } from '../../src/auth/index.ts';
import type { Action, Decision, Grant, Identity, Level, PolicyView, Role } from '../../src/auth/index.ts';
import { isWithin } from '../../src/meta/paths.ts';
import { propertyRuns, testSeed } from '../support/seed.ts';

function world(): { grants: GrantTable; owners: Map<string, string>; view: PolicyView } {
  const grants = new GrantTable();
  const owners = new Map<string, string>([['/', 'root']]);
  return { grants, owners, view: policyView(grants, (p) => owners.get(p)) };
}

const who = (user: string, ...roles: Role[]): Identity => ({ user, roles, gen: 0 });
const admin = who('ada', 'admin');
const writer = who('wes', 'writer');
const reader = who('rae', 'reader');
const nobody = who('nob');

function refused(d: Decision): string {
  if (d.allowed) throw new Error(`allowed via ${d.via}`);
  return d.reason;
}

describe('policy: refusals first', () => {
  it('a user with no role and no grant may do nothing', () => {
    const { view } = world();
    for (const action of ['read', 'write', 'grant', 'admin'] as const) expect(authorize(nobody, action, '/docs/a', view).allowed).toBe(false);
  });

  it('a reader cannot write, and is told how to get write', () => {
    const { view } = world();
    const reason = refused(authorize(reader, 'write', '/docs', view));
    expect(reason).toContain('rae may not write /docs');
    expect(reason).toContain('has only read there (role reader)');
    expect(reason).toContain('`dfs grant /docs rae write`');
    expect(refused(authorizeOperation(reader, { op: 'put', path: '/docs/f' }, view))).toContain('`dfs grant /docs rae write`');
  });

  it('only the admin role administers the cluster (users, nodes, settings)', () => {
    const { grants, view } = world();
    grants.grant({ path: '/', principal: 'wes', level: 'admin' });
    for (const op of ['users', 'nodes', 'settings'] as const) {
      const reason = refused(authorizeOperation(writer, { op }, view));
      expect(reason).toContain('needs the admin role');
      expect(authorizeOperation(admin, { op }, view).allowed).toBe(true);
    }
  });

  it('once a path has explicit grants, role defaults stop there: a writer cannot read it', () => {
    const { grants, view } = world();
    grants.grant({ path: '/private', principal: 'alice', level: 'write' });
    const reason = refused(authorize(writer, 'read', '/private/plans.txt', view));
    expect(reason).toContain('/private has explicit grants, so role defaults do not apply below it');
    expect(reason).toContain('`dfs grant /private/plans.txt wes read`');
    expect(authorize(reader, 'read', '/private', view).allowed).toBe(false);
    expect(authorize(who('alice'), 'write', '/private/plans.txt', view).allowed).toBe(true);
    expect(authorize(admin, 'write', '/private/plans.txt', view).allowed).toBe(true);
    // Elsewhere nothing changed.
    expect(authorize(writer, 'write', '/public/x', view).allowed).toBe(true);
    // Sharing it again with a role.
    grants.grant({ path: '/private', principal: '@reader', level: 'read' });
    expect(authorize(reader, 'read', '/private/plans.txt', view).allowed).toBe(true);
    expect(authorize(reader, 'write', '/private/plans.txt', view).allowed).toBe(false);
    expect(authorize(writer, 'read', '/private/plans.txt', view).allowed).toBe(false); // wes is a writer, not a reader
  });

  it('a grant of one level does not give a higher one', () => {
    const { grants, view } = world();
    grants.grant({ path: '/a', principal: 'nob', level: 'read' });
    expect(authorize(nobody, 'read', '/a', view).allowed).toBe(true);
    expect(refused(authorize(nobody, 'write', '/a', view))).toContain('has only read there (grant read on /a to nob)');
    grants.grant({ path: '/a', principal: 'nob', level: 'write' });
    expect(authorize(nobody, 'write', '/a', view).allowed).toBe(true);
    expect(refused(authorize(nobody, 'grant', '/a', view))).toContain('needs admin on /a');
  });

  it('a revoke applies to the very next call', () => {
    const { grants, view } = world();
    grants.grant({ path: '/a', principal: 'nob', level: 'write' });
    expect(authorize(nobody, 'write', '/a/b/c', view).allowed).toBe(true);
    expect(grants.revoke('/a', 'nob')).toBe(true);
    expect(authorize(nobody, 'write', '/a/b/c', view).allowed).toBe(false);
    expect(grants.revoke('/a', 'nob')).toBe(false);
  });

  it('an owner may grant on their entries; a non-owner may not', () => {
    const { owners, view } = world();
    owners.set('/home', 'ada');
    owners.set('/home/alice', 'alice');
    owners.set('/home/alice/shared', 'bob'); // bob wrote into alice's directory
    const alice = who('alice', 'writer');
    const bob = who('bob', 'writer');
    expect(authorizeOperation(alice, { op: 'grant', path: '/home/alice' }, view).allowed).toBe(true);
    expect(authorizeOperation(alice, { op: 'grant', path: '/home/alice/shared/x' }, view)).toEqual({ allowed: true, via: 'owner of /home/alice' });
    expect(refused(authorizeOperation(bob, { op: 'grant', path: '/home/alice' }, view))).toContain('an admin or an owner of /home/alice can run');
    expect(authorizeOperation(bob, { op: 'grant', path: '/home/alice/shared' }, view).allowed).toBe(true);
    expect(refused(authorizeOperation(writer, { op: 'acl', path: '/home' }, view))).toContain('may not grant on or read the grants of /home');
  });

  it('the root has no owner here: the user named root gets nothing from the state\'s "root" owner', () => {
    const { view } = world();
    expect(authorize(who('root'), 'write', '/x', view).allowed).toBe(false);
  });

  it('a restricted file cannot be overwritten or removed by a writer of its directory', () => {
    const { grants, view } = world();
    grants.grant({ path: '/pub/secret', principal: 'alice', level: 'admin' });
    expect(authorizeOperation(writer, { op: 'put', path: '/pub/other' }, view).allowed).toBe(true);
    expect(refused(authorizeOperation(writer, { op: 'put', path: '/pub/secret' }, view))).toContain('may not write /pub/secret');
    expect(authorizeOperation(writer, { op: 'rm', path: '/pub/secret' }, view).allowed).toBe(false);
    expect(authorizeOperation(who('alice'), { op: 'rm', path: '/pub/secret' }, view).allowed).toBe(false); // no write on /pub
  });

  it('removing or moving a directory needs write on the restricted paths below it', () => {
    const { grants, view } = world();
    grants.grant({ path: '/pub/team/private', principal: 'alice', level: 'write' });
    expect(refused(authorizeOperation(writer, { op: 'rm', path: '/pub/team' }, view))).toContain('/pub/team/private');
    expect(refused(authorizeOperation(writer, { op: 'mv', from: '/pub/team', to: '/pub/t2' }, view))).toContain('/pub/team/private');
    expect(authorizeOperation(writer, { op: 'rm', path: '/pub/other' }, view).allowed).toBe(true);
    expect(authorizeOperation(admin, { op: 'rm', path: '/pub/team' }, view).allowed).toBe(true);
  });

  it('mv needs write on both sides', () => {
    const { grants, view } = world();
    grants.grant({ path: '/in', principal: 'nob', level: 'write' });
    grants.grant({ path: '/out', principal: 'nob', level: 'read' });
    expect(refused(authorizeOperation(nobody, { op: 'mv', from: '/in/f', to: '/out/f' }, view))).toContain('may not write /out');
    expect(refused(authorizeOperation(nobody, { op: 'mv', from: '/out/f', to: '/in/f' }, view))).toContain('may not write /out');
    grants.grant({ path: '/out', principal: 'nob', level: 'write' });
    expect(authorizeOperation(nobody, { op: 'mv', from: '/in/f', to: '/out/f' }, view).allowed).toBe(true);
  });

  it('bad paths and grants are refused', () => {
    const { view } = world();
    expect(() => authorize(admin, 'read', 'relative', view)).toThrow(DfsError);
    expect(() => authorize(admin, 'read', '/a/../b', view)).toThrow(/"\.\." is not allowed/);
    for (const g of [
      { path: '/a/', principal: 'x', level: 'read' },
      { path: 'a', principal: 'x', level: 'read' },
      { path: '/a', principal: '@boss', level: 'read' },
      { path: '/a', principal: '-rf', level: 'read' },
      { path: '/a', principal: 'x', level: 'owner' },
      { path: '/a', principal: '', level: 'read' },
      null,
    ]) {
      expect(() => parseGrant(g)).toThrow(DfsError);
    }
  });
});

describe('policy', () => {
  it('plain clusters work by roles: admin everything, writer writes, reader reads', () => {
    const { view } = world();
    for (const action of ['read', 'write', 'grant', 'admin'] as const) expect(authorize(admin, action, '/any/where', view)).toEqual({ allowed: true, via: 'role admin' });
    expect(authorize(writer, 'write', '/', view)).toEqual({ allowed: true, via: 'role writer' });
    expect(authorize(writer, 'read', '/x/y', view).allowed).toBe(true);
    expect(authorize(writer, 'grant', '/x/y', view).allowed).toBe(false);
    expect(authorize(reader, 'read', '/x/y', view)).toEqual({ allowed: true, via: 'role reader' });
  });

  it('grants inherit down directories, to users and to roles', () => {
    const { grants, view } = world();
    grants.grant({ path: '/a', principal: 'nob', level: 'write' });
    expect(authorize(nobody, 'write', '/a/b/c', view)).toEqual({ allowed: true, via: 'grant write on /a to nob' });
    expect(authorize(nobody, 'read', '/ab', view).allowed).toBe(false); // a sibling with a common prefix
    grants.grant({ path: '/a/b', principal: '@reader', level: 'read' });
    expect(authorize(nobody, 'write', '/a/b/c', view).allowed).toBe(true); // grants above still count below a restricted path
    expect(authorize(reader, 'read', '/a/b/c', view).allowed).toBe(true);
    expect(authorize(reader, 'read', '/a/x', view).allowed).toBe(false); // /a is restricted for roles
  });

  it('an owner has admin on their entries and below', () => {
    const { owners, view } = world();
    owners.set('/home/alice', 'alice');
    const alice = who('alice');
    expect(authorize(alice, 'write', '/home/alice/deep/file', view).allowed).toBe(true);
    expect(authorize(alice, 'grant', '/home/alice/deep', view)).toEqual({ allowed: true, via: 'owner of /home/alice' });
    expect(authorize(alice, 'read', '/home', view).allowed).toBe(false);
  });

  it('operations map onto checks', () => {
    expect(checksFor({ op: 'stat', path: '/a/b' })).toEqual([{ action: 'read', path: '/a/b' }]);
    expect(checksFor({ op: 'ls', path: '/a/' })).toEqual([{ action: 'read', path: '/a' }]);
    expect(checksFor({ op: 'get', path: '/a/b' })).toEqual([{ action: 'read', path: '/a/b' }]);
    for (const op of ['mkdir', 'put', 'rm'] as const) {
      expect(checksFor({ op, path: '/a/b' })).toEqual([
        { action: 'write', path: '/a' },
        { action: 'write', path: '/a/b' },
      ]);
    }
    expect(checksFor({ op: 'mkdir', path: '/a' })).toEqual([
      { action: 'write', path: '/' },
      { action: 'write', path: '/a' },
    ]);
    expect(checksFor({ op: 'mv', from: '/a/b', to: '/c/d' })).toEqual([
      { action: 'write', path: '/a' },
      { action: 'write', path: '/a/b' },
      { action: 'write', path: '/c' },
      { action: 'write', path: '/c/d' },
    ]);
    expect(checksFor({ op: 'mv', from: '/a/b', to: '/a/c' })).toHaveLength(3);
    for (const op of ['grant', 'revoke', 'acl'] as const) expect(checksFor({ op, path: '/a' })).toEqual([{ action: 'grant', path: '/a' }]);
    for (const op of ['users', 'nodes', 'settings'] as const) expect(checksFor({ op })).toEqual([{ action: 'admin', path: '/' }]);
  });

  it('GrantTable: one grant per (path, principal), removed and moved with their entries', () => {
    const t = new GrantTable();
    expect(t.grant({ path: '/a', principal: 'x', level: 'read' })).toBe(true);
    expect(t.grant({ path: '/a', principal: 'x', level: 'read' })).toBe(false);
    expect(t.grant({ path: '/a', principal: 'x', level: 'write' })).toBe(true);
    t.grant({ path: '/a/b', principal: '@reader', level: 'read' });
    t.grant({ path: '/a/b/c', principal: 'y', level: 'admin' });
    t.grant({ path: '/z', principal: 'y', level: 'read' });
    expect(t.grantsAt('/a')).toEqual([{ path: '/a', principal: 'x', level: 'write' }]);
    expect([...t.grantedPathsBelow('/a')]).toEqual(['/a/b', '/a/b/c']);
    t.moveWithin('/a/b', '/m');
    expect(t.all()).toEqual([
      { path: '/a', principal: 'x', level: 'write' },
      { path: '/m', principal: '@reader', level: 'read' },
      { path: '/m/c', principal: 'y', level: 'admin' },
      { path: '/z', principal: 'y', level: 'read' },
    ]);
    expect(t.removeWithin('/m')).toBe(2);
    expect(t.all().map((g) => g.path)).toEqual(['/a', '/z']);
    expect(() => t.moveWithin('/a', '/a/b')).toThrow(DfsError);
  });

  it('property: the model, checked against a direct reading of it', () => {
    const seed = testSeed('auth policy model');
    const paths = ['/', '/a', '/a/b', '/a/b/c', '/a/x', '/d', '/d/e'];
    const users = ['u1', 'u2'];
    const principal = fc.constantFrom('u1', 'u2', '@writer', '@reader', '@admin');
    const level = fc.constantFrom<Level>('read', 'write', 'admin');
    const grantArb = fc.record({ path: fc.constantFrom(...paths), principal, level });
    const rank = { read: 1, write: 2, admin: 3 } as const;
    const need: Record<Exclude<Action, 'admin'>, Level> = { read: 'read', write: 'write', grant: 'admin' };
    fc.assert(
      fc.property(
        fc.array(grantArb, { maxLength: 6 }),
        fc.dictionary(fc.constantFrom(...paths.slice(1)), fc.constantFrom(...users), { maxKeys: 3 }),
        fc.constantFrom(...users),
        fc.subarray<Role>(['admin', 'writer', 'reader']),
        fc.constantFrom(...paths),
        fc.constantFrom<Exclude<Action, 'admin'>>('read', 'write', 'grant'),
        (grantList, ownerDict, user, roles, path, action) => {
          const grants = new GrantTable();
          for (const g of grantList) grants.grant(g);
          const owners = new Map(Object.entries(ownerDict));
          const view = policyView(grants, (p) => owners.get(p));
          const id = who(user, ...roles);
          const ancestors = paths.filter((p) => isWithin(path, p));
          const along: Grant[] = ancestors.flatMap((p) => grants.grantsAt(p));
          const levels: Level[] = along.filter((g) => g.principal === user || roles.some((r) => g.principal === `@${r}`)).map((g) => g.level);
          // Ownership counts at or below the nearest path with explicit grants, not above it.
          const restrictedAt = [...ancestors].reverse().find((p) => grants.grantsAt(p).length > 0);
          if (ancestors.some((p) => p !== '/' && owners.get(p) === user && (restrictedAt === undefined || isWithin(p, restrictedAt)))) levels.push('admin');
          if (along.length === 0 && roles.includes('writer')) levels.push('write');
          if (along.length === 0 && roles.includes('reader')) levels.push('read');
          const expected = roles.includes('admin') || levels.some((l) => rank[l] >= rank[need[action]]);
          const got = authorize(id, action, path, view);
          expect(got.allowed).toBe(expected);
          // More access never needs less: grant ⇒ write ⇒ read.
          if (authorize(id, 'grant', path, view).allowed) expect(authorize(id, 'write', path, view).allowed).toBe(true);
          if (authorize(id, 'write', path, view).allowed) expect(authorize(id, 'read', path, view).allowed).toBe(true);
          // A refusal always says how to get the access.
          if (!got.allowed) expect(got.reason).toContain(`dfs grant ${path} ${user} ${need[action]}`);
        },
      ),
      { seed, numRuns: propertyRuns(300) },
    );
  });
});
