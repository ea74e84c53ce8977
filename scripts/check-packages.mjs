#!/usr/bin/env node
/**
 * The packaging check: builds, packs and installs every publishable workspace package the way
 * a user would get it from npm, without the network, and fails when any of it is broken.
 *
 * For each package under packages/* and apps/* whose package.json is not private:
 *   1. build     tsup, all packages at once (a failure is retried in dependency order, in
 *                case a d.ts build needs a dependency's dist/), checking that git would not
 *                pick up the output;
 *   2. pack      `pnpm pack` (which applies publishConfig), then the packed package.json must
 *                point at dist/ files that are in the tarball, never at src/ or .ts sources,
 *                and carry no `workspace:` range;
 *   3. publint   on the tarball, warnings count as errors;
 *   4. attw      @arethetypeswrong/cli on the tarball with the esm-only profile;
 *   5. install   all tarballs together into a scratch project in the OS temp dir (see
 *                `installScratch` for how this stays offline);
 *   6. types     tsc compiles a file importing every entry of every package (strict, with
 *                .d.ts files checked), so the published types resolve and compile;
 *   7. import    each entry is imported with Node and must export every runtime name its
 *                source entry exports;
 *   8. bin       each `bin` runs `--help` from the scratch node_modules/.bin and exits 0, and
 *                the commands in BIN_SMOKE (e.g. `tollgate tenants list`, which migrates a
 *                fresh embedded database with the migrations from the tarball).
 *
 * Usage: node scripts/check-packages.mjs [package names...] [--keep]
 *   names limit the check to those packages (their workspace dependencies come along);
 *   --keep leaves the temp dir for a look.
 */
import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => join(root, 'node_modules', '.bin', name);
const started = Date.now();
const args = process.argv.slice(2);
const keep = args.includes('--keep');
const only = args.filter((arg) => !arg.startsWith('--'));

// ---------------------------------------------------------------------------------------------
// Running commands

/**
 * Runs a command, capturing its output. Never throws: the result says how it went. The
 * environment drops npm_* variables, which a parent `pnpm test` sets and which would otherwise
 * steer the pnpm runs below (their workspace, their lockfile settings).
 */
function run(command, commandArgs, options = {}) {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)),
  );
  return new Promise((resolvePromise) => {
    const child = spawn(command, commandArgs, {
      cwd: options.cwd ?? root,
      env: { ...env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (data) => (output += data));
    child.stderr.on('data', (data) => (output += data));
    const timeout = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 180_000);
    child.on('error', (error) => {
      clearTimeout(timeout);
      resolvePromise({ code: -1, output: `${output}${error.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timeout);
      resolvePromise({
        code: code ?? -1,
        output: signal ? `${output}\n(killed by ${signal})` : output,
      });
    });
  });
}

/**
 * How to call pnpm: under `pnpm test` the running pnpm is in npm_execpath; otherwise the
 * version in the root packageManager field, through npx (pnpm need not be on PATH).
 */
function pnpmCommand() {
  const execPath = process.env.npm_execpath;
  if (execPath && /pnpm/i.test(execPath) && existsSync(execPath) && /\.(c?js)$/.test(execPath)) {
    return [process.execPath, [execPath]];
  }
  const packageManager =
    JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).packageManager ?? 'pnpm';
  return ['npx', ['--yes', packageManager.split('+')[0]]];
}

/** The last lines of a command's output, for a failure report. */
function tail(output, lines = 25) {
  return output
    .split('\n')
    .filter((line) => line.trim() && !/^npm warn/i.test(line))
    .slice(-lines)
    .join('\n');
}

// ---------------------------------------------------------------------------------------------
// The workspace

function readJson(file) {
  return JSON.parse(readFileSync(file, 'utf8'));
}

/** Publishable packages of the workspace, in dependency order, grouped in levels. */
function workspacePackages() {
  const all = [];
  for (const group of ['packages', 'apps']) {
    const groupDir = join(root, group);
    if (!existsSync(groupDir)) continue;
    for (const entry of readdirSync(groupDir, { withFileTypes: true })) {
      const dir = join(groupDir, entry.name);
      if (!entry.isDirectory() || !existsSync(join(dir, 'package.json'))) continue;
      const manifest = readJson(join(dir, 'package.json'));
      if (manifest.private) continue;
      all.push({ name: manifest.name, dir, manifest });
    }
  }
  const byName = new Map(all.map((pkg) => [pkg.name, pkg]));
  for (const pkg of all) {
    const {
      dependencies = {},
      peerDependencies = {},
      optionalDependencies = {},
      devDependencies = {},
    } = pkg.manifest;
    pkg.workspaceDeps = [
      ...new Set(
        Object.keys({
          ...dependencies,
          ...peerDependencies,
          ...optionalDependencies,
          ...devDependencies,
        }).filter((dep) => byName.has(dep)),
      ),
    ];
  }
  let selected = all;
  if (only.length > 0) {
    const wanted = new Set();
    const add = (name) => {
      const pkg = byName.get(name);
      if (!pkg) throw new Error(`No publishable workspace package named ${name}.`);
      if (wanted.has(name)) return;
      wanted.add(name);
      for (const dep of pkg.workspaceDeps) add(dep);
    };
    for (const name of only) add(name);
    selected = all.filter((pkg) => wanted.has(pkg.name));
  }
  const levels = [];
  const placed = new Set();
  let rest = selected;
  while (rest.length > 0) {
    const level = rest.filter((pkg) =>
      pkg.workspaceDeps.every((dep) => placed.has(dep) || !selected.some((s) => s.name === dep)),
    );
    if (level.length === 0)
      throw new Error(
        `Workspace dependency cycle among: ${rest.map((pkg) => pkg.name).join(', ')}`,
      );
    for (const pkg of level) placed.add(pkg.name);
    levels.push(level);
    rest = rest.filter((pkg) => !placed.has(pkg.name));
  }
  return levels;
}

// ---------------------------------------------------------------------------------------------
// The report

const stages = ['build', 'pack', 'publint', 'attw', 'install', 'types', 'import', 'bin'];
const results = new Map();
const failures = [];
const timings = [];

/** Times one phase of the check, for the report. */
async function timed(label, work) {
  const phaseStart = Date.now();
  try {
    return await work();
  } finally {
    timings.push(`${label} ${((Date.now() - phaseStart) / 1000).toFixed(1)}s`);
  }
}

function record(pkg, stage, ok, detail = '') {
  if (!results.has(pkg.name)) results.set(pkg.name, {});
  results.get(pkg.name)[stage] = ok === null ? 'skip' : ok ? 'ok' : 'FAIL';
  if (ok === false) failures.push({ name: pkg.name, stage, detail: detail.trim() });
}

function printReport(packages) {
  const width = Math.max(...packages.map((pkg) => pkg.name.length), 7);
  const header = ['package'.padEnd(width), ...stages.map((stage) => stage.padEnd(7))].join('  ');
  console.log(`\n${header}\n${'-'.repeat(header.length)}`);
  for (const pkg of packages) {
    const row = results.get(pkg.name) ?? {};
    console.log(
      [pkg.name.padEnd(width), ...stages.map((stage) => (row[stage] ?? '-').padEnd(7))].join('  '),
    );
  }
  for (const failure of failures) {
    console.log(`\n✗ ${failure.name}: ${failure.stage} failed`);
    if (failure.detail) console.log(failure.detail.replace(/^/gm, '    '));
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (timings.length > 0) console.log(`\ntimings: ${timings.join(', ')}`);
  console.log(
    failures.length === 0
      ? `\npackages: ${packages.length} checked, all good (${seconds} s)`
      : `\npackages: ${failures.length} failure(s) in ${new Set(failures.map((f) => f.name)).size} package(s) (${seconds} s)`,
  );
}

// ---------------------------------------------------------------------------------------------
// Stages

/** Builds one package with tsup; returns `{ ok, detail }` (recorded by the caller). */
async function build(pkg) {
  const result = await run(bin('tsup'), [], { cwd: pkg.dir });
  if (result.code !== 0) return { ok: false, detail: tail(result.output) };
  // dist/ must be ignored by git; a build that leaves anything git would commit is a bug.
  const status = await run(
    'git',
    ['status', '--porcelain', '--untracked-files=all', '--', 'dist'],
    { cwd: pkg.dir },
  );
  if (status.code === 0 && status.output.trim()) {
    return { ok: false, detail: `git would pick up build output:\n${status.output}` };
  }
  return { ok: true, detail: '' };
}

/** Every string in an exports/bin/main/types value, with the condition path that leads to it. */
function targets(value, path = []) {
  if (typeof value === 'string') return [{ path: path.join(' > ') || '(root)', target: value }];
  if (value && typeof value === 'object') {
    return Object.entries(value).flatMap(([key, inner]) => targets(inner, [...path, key]));
  }
  return [];
}

/** Checks the packed package.json and files. Returns a list of problems. */
function inspectPacked(packedDir) {
  const problems = [];
  const manifest = readJson(join(packedDir, 'package.json'));
  const fields = {
    exports: manifest.exports,
    main: manifest.main,
    module: manifest.module,
    types: manifest.types,
    typings: manifest.typings,
    bin: typeof manifest.bin === 'string' ? { [manifest.name]: manifest.bin } : manifest.bin,
  };
  if (!manifest.exports) problems.push('package.json has no "exports".');
  for (const [field, value] of Object.entries(fields)) {
    for (const { path, target } of targets(value)) {
      const where = `${field}${path === '(root)' ? '' : ` ${path}`} -> ${target}`;
      if (
        /(^|\/)src\//.test(target) ||
        (/\.(c|m)?ts$/.test(target) && !/\.d\.(c|m)?ts$/.test(target))
      ) {
        problems.push(`${where}: points at source, not dist/`);
      } else if (!target.replace(/^\.\//, '').startsWith('dist/')) {
        problems.push(`${where}: not under dist/`);
      } else if (!target.includes('*') && !existsSync(join(packedDir, target))) {
        problems.push(`${where}: file missing from the tarball`);
      }
    }
  }
  for (const group of ['dependencies', 'peerDependencies', 'optionalDependencies']) {
    for (const [dep, range] of Object.entries(manifest[group] ?? {})) {
      if (String(range).startsWith('workspace:'))
        problems.push(`${group}.${dep} is still "${range}"`);
    }
  }
  const listFiles = (dir) =>
    readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
      entry.isDirectory()
        ? listFiles(join(dir, entry.name))
        : [relative(packedDir, join(dir, entry.name))],
    );
  for (const file of listFiles(packedDir)) {
    if (file.startsWith('src/') || (/\.(c|m)?ts$/.test(file) && !/\.d\.(c|m)?ts$/.test(file))) {
      problems.push(`the tarball holds source file ${file}`);
    }
  }
  return { problems, manifest };
}

async function pack(packages, packDir) {
  const [command, prefix] = pnpmCommand();
  const filters = packages.flatMap((pkg) => ['--filter', pkg.name]);
  const result = await run(
    command,
    [...prefix, ...filters, 'pack', '--pack-destination', packDir],
    { timeoutMs: 240_000 },
  );
  const tarballs = readdirSync(packDir).filter((file) => file.endsWith('.tgz'));
  for (const pkg of packages) {
    const file = `${pkg.name.replace(/^@/, '').replace('/', '-')}-${pkg.manifest.version}.tgz`;
    if (!tarballs.includes(file)) {
      record(pkg, 'pack', false, `no ${file} was produced.\n${tail(result.output)}`);
      continue;
    }
    pkg.tarball = join(packDir, file);
    pkg.packedDir = join(packDir, 'unpacked', pkg.name);
    mkdirSync(pkg.packedDir, { recursive: true });
    const untar = await run('tar', [
      '-xzf',
      pkg.tarball,
      '-C',
      pkg.packedDir,
      '--strip-components=1',
    ]);
    if (untar.code !== 0) {
      record(pkg, 'pack', false, `could not unpack ${file}:\n${tail(untar.output)}`);
      pkg.tarball = undefined;
      continue;
    }
    const { problems, manifest } = inspectPacked(pkg.packedDir);
    pkg.packed = manifest;
    record(pkg, 'pack', problems.length === 0, problems.join('\n'));
    if (problems.length > 0) pkg.tarball = undefined;
  }
}

async function lint(pkg) {
  const publint = await run(bin('publint'), ['run', pkg.tarball, '--strict']);
  record(pkg, 'publint', publint.code === 0, tail(publint.output));
  // esm-only: a CommonJS `require` of an ESM-only package is expected to fail, and node10
  // resolution (no exports map) is not supported.
  const attw = await run(bin('attw'), [pkg.tarball, '--profile', 'esm-only', '--format', 'ascii']);
  record(pkg, 'attw', attw.code === 0, tail(attw.output, 40));
}

/**
 * Installs every tarball into a scratch project outside the workspace, with no network.
 *
 * `pnpm add --offline` alone is not enough: it resolves ranges from pnpm's metadata cache,
 * which a `--frozen-lockfile` install (as in CI) never fills. So the scratch project resolves
 * nothing from a registry: each @tollgate package comes from its tarball (an override also
 * catches the `^x.y.z` ranges pack wrote for `workspace:^`), and each third-party dependency
 * is linked to the exact copy the workspace installed for that package (so it satisfies the
 * declared range, as the lockfile resolved it). pnpm still lays out node_modules from the
 * packed package.json files, so an import of anything a package does not declare fails. A
 * private store and cache, and an unreachable registry, prove nothing is fetched.
 */
async function installScratch(packages, scratchDir) {
  const overrides = {};
  const direct = {};
  const conflicts = [];
  const link = (dep, fromDir, owner) => {
    const installed = join(fromDir, 'node_modules', dep);
    if (!existsSync(installed)) {
      conflicts.push(
        `${owner} depends on ${dep}, which the workspace has not installed (run pnpm install)`,
      );
      return undefined;
    }
    const target = `link:${realpathSync(installed)}`;
    if (overrides[dep] && overrides[dep] !== target) {
      conflicts.push(
        `${dep}: two copies in the workspace (${overrides[dep]} and ${target}); dedupe them`,
      );
    }
    overrides[dep] = target;
    return target;
  };
  for (const pkg of packages) {
    overrides[pkg.name] = `file:${pkg.tarball}`;
    direct[pkg.name] = `file:${pkg.tarball}`;
  }
  const names = new Set(packages.map((pkg) => pkg.name));
  for (const pkg of packages) {
    const { dependencies = {}, optionalDependencies = {}, peerDependencies = {} } = pkg.packed;
    for (const dep of Object.keys({ ...dependencies, ...optionalDependencies })) {
      if (!names.has(dep)) link(dep, pkg.dir, pkg.name);
    }
    // Peers are the user's to install: the scratch project plays the user.
    for (const dep of Object.keys(peerDependencies)) {
      if (names.has(dep)) continue;
      const target = link(dep, pkg.dir, pkg.name);
      if (target) direct[dep] = target;
    }
  }
  // For the types stage.
  if (existsSync(join(root, 'node_modules', '@types', 'node'))) {
    direct['@types/node'] = `link:${realpathSync(join(root, 'node_modules', '@types', 'node'))}`;
  }
  if (conflicts.length > 0) {
    for (const pkg of packages) record(pkg, 'install', false, conflicts.join('\n'));
    return false;
  }
  writeFileSync(
    join(scratchDir, 'package.json'),
    `${JSON.stringify({ name: 'tollgate-scratch', private: true, type: 'module', dependencies: direct, pnpm: { overrides } }, null, 2)}\n`,
  );
  const [command, prefix] = pnpmCommand();
  const result = await run(
    command,
    [
      ...prefix,
      'install',
      '--offline',
      '--ignore-workspace',
      `--config.store-dir=${join(scratchDir, '.store')}`,
      `--config.cache-dir=${join(scratchDir, '.cache')}`,
      '--config.registry=http://127.0.0.1:9/',
      '--config.update-notifier=false',
      '--config.strict-peer-dependencies=true',
    ],
    { cwd: scratchDir, timeoutMs: 240_000 },
  );
  for (const pkg of packages) record(pkg, 'install', result.code === 0, tail(result.output));
  return result.code === 0;
}

/** The entry points of a package: `{ specifier, source }` per exports key (no patterns). */
function entries(pkg) {
  const sourceExports = pkg.manifest.exports;
  const map =
    typeof sourceExports === 'string'
      ? { '.': sourceExports }
      : sourceExports && !Object.keys(sourceExports)[0]?.startsWith('.')
        ? { '.': sourceExports }
        : (sourceExports ?? {});
  return Object.entries(map)
    .filter(([key]) => !key.includes('*') && key !== './package.json')
    .map(([key, value]) => {
      const source = targets(value).find(
        ({ target }) => /\.(c|m)?ts$/.test(target) && !/\.d\./.test(target),
      )?.target;
      return {
        specifier: key === '.' ? pkg.name : `${pkg.name}/${key.replace(/^\.\//, '')}`,
        source: source && join(pkg.dir, source),
      };
    });
}

/** The runtime (non-type) export names of each source entry, read with the TypeScript API. */
function sourceExportNames(files) {
  const ts = createRequire(join(root, 'package.json'))('typescript');
  const program = ts.createProgram(files, {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    noEmit: true,
    skipLibCheck: true,
  });
  const checker = program.getTypeChecker();
  const names = new Map();
  for (const file of files) {
    const sourceFile = program.getSourceFile(file);
    const moduleSymbol = sourceFile && checker.getSymbolAtLocation(sourceFile);
    if (!moduleSymbol) {
      names.set(file, undefined);
      continue;
    }
    const runtime = [];
    for (const symbol of checker.getExportsOfModule(moduleSymbol)) {
      const declaration = symbol.declarations?.[0];
      const typeOnly =
        declaration &&
        ((ts.isExportSpecifier(declaration) &&
          (declaration.isTypeOnly || declaration.parent.parent.isTypeOnly)) ||
          ts.isTypeOnlyImportOrExportDeclaration?.(declaration));
      const target =
        symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
      if (!typeOnly && target.flags & ts.SymbolFlags.Value) runtime.push(symbol.name);
    }
    names.set(file, runtime.sort());
  }
  return names;
}

async function typecheck(packages, scratchDir) {
  const lines = packages.flatMap((pkg, index) =>
    entries(pkg).map(
      (entry, entryIndex) => `export * as entry${index}_${entryIndex} from '${entry.specifier}';`,
    ),
  );
  writeFileSync(join(scratchDir, 'consumer.ts'), `${lines.join('\n')}\n`);
  writeFileSync(
    join(scratchDir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        target: 'ES2022',
        lib: ['ES2023', 'DOM', 'DOM.Iterable'],
        types: existsSync(join(scratchDir, 'node_modules', '@types', 'node')) ? ['node'] : [],
        strict: true,
        noEmit: true,
        // Checks the published .d.ts files themselves, not only their use; TypeScript's own
        // lib files need no checking and are the slowest part.
        skipLibCheck: false,
        skipDefaultLibCheck: true,
      },
      files: ['consumer.ts'],
    }),
  );
  const result = await run(
    process.execPath,
    [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'],
    {
      cwd: scratchDir,
    },
  );
  // Only errors in our own packages' types count: a third-party .d.ts is not ours to fix.
  const errors = result.output.split('\n').filter((line) => /error TS\d+/.test(line));
  const crashed = result.code !== 0 && errors.length === 0;
  for (const pkg of packages) {
    const mine = errors.filter(
      (line) =>
        line.includes(`node_modules/${pkg.name}/`) ||
        (line.startsWith('consumer.ts') &&
          (line.includes(`'${pkg.name}`) || !line.includes("'@tollgate/"))),
    );
    if (crashed) record(pkg, 'types', false, tail(result.output));
    else record(pkg, 'types', mine.length === 0, mine.join('\n'));
  }
}

async function importCheck(pkg, scratchDir, expectedNames) {
  const problems = [];
  for (const entry of entries(pkg)) {
    const expected = entry.source ? expectedNames.get(entry.source) : undefined;
    const script = `const m = await import(${JSON.stringify(entry.specifier)}); console.log(JSON.stringify(Object.keys(m)));`;
    const result = await run(process.execPath, ['--input-type=module', '-e', script], {
      cwd: scratchDir,
      timeoutMs: 60_000,
    });
    if (result.code !== 0) {
      problems.push(`import('${entry.specifier}') failed:\n${tail(result.output, 12)}`);
      continue;
    }
    const actual = JSON.parse(result.output.trim().split('\n').at(-1));
    if (actual.length === 0) problems.push(`import('${entry.specifier}') has no exports`);
    if (expected) {
      const missing = expected.filter((name) => !actual.includes(name));
      if (missing.length > 0)
        problems.push(`${entry.specifier} lacks exports its source has: ${missing.join(', ')}`);
    }
  }
  record(pkg, 'import', problems.length === 0, problems.join('\n'));
}

/**
 * Commands a bin must also run from the installed tarballs, beyond `--help`: ones that touch
 * files the package ships besides its code (the tenancy migrations, applied to a fresh
 * embedded database in the scratch project).
 */
const BIN_SMOKE = { tollgate: [['tenants', 'list', '--json']] };

async function binCheck(pkg, scratchDir) {
  const bins =
    typeof pkg.packed.bin === 'string'
      ? { [pkg.name.split('/').pop()]: pkg.packed.bin }
      : (pkg.packed.bin ?? {});
  if (Object.keys(bins).length === 0) return record(pkg, 'bin', null);
  const problems = [];
  for (const name of Object.keys(bins)) {
    const shim = join(scratchDir, 'node_modules', '.bin', name);
    if (!existsSync(shim)) {
      problems.push(`node_modules/.bin/${name} was not created`);
      continue;
    }
    const result = await run(shim, ['--help'], { cwd: scratchDir, timeoutMs: 60_000 });
    if (result.code !== 0)
      problems.push(`${name} --help exited ${result.code}:\n${tail(result.output, 12)}`);
    else if (!result.output.trim()) problems.push(`${name} --help printed nothing`);
    for (const args of BIN_SMOKE[name] ?? []) {
      const smoke = await run(shim, args, {
        cwd: scratchDir,
        env: { TOLLGATE_DATA_DIR: join(scratchDir, 'smoke-data'), TOLLGATE_CONFIG: '' },
        timeoutMs: 120_000,
      });
      if (smoke.code !== 0)
        problems.push(`${name} ${args.join(' ')} exited ${smoke.code}:\n${tail(smoke.output, 12)}`);
    }
  }
  record(pkg, 'bin', problems.length === 0, problems.join('\n'));
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const levels = workspacePackages();
  const packages = levels.flat();
  console.log(`check-packages: ${packages.map((pkg) => pkg.name).join(', ')}`);
  const workDir = mkdtempSync(join(realpathSync(tmpdir()), 'tollgate-packages-'));
  try {
    await timed('build', async () => {
      // All at once: inside the workspace a dependency resolves to its src/*.ts (its exports
      // map), so no d.ts build needs another package's dist/. Should that change, a failed
      // build is tried once more in dependency order, once its dependencies have built.
      const outcomes = new Map(
        await Promise.all(packages.map(async (pkg) => [pkg.name, await build(pkg)])),
      );
      for (const pkg of packages) {
        if (outcomes.get(pkg.name).ok || pkg.workspaceDeps.length === 0) continue;
        const brokenDep = pkg.workspaceDeps.find(
          (dep) => outcomes.has(dep) && !outcomes.get(dep).ok,
        );
        outcomes.set(pkg.name, brokenDep ? outcomes.get(pkg.name) : await build(pkg));
      }
      for (const pkg of packages) {
        const { ok, detail } = outcomes.get(pkg.name);
        record(pkg, 'build', ok, detail);
      }
    });
    const built = packages.filter((pkg) => results.get(pkg.name).build === 'ok');
    const packDir = join(workDir, 'pack');
    mkdirSync(packDir);
    if (built.length > 0) await timed('pack', () => pack(built, packDir));
    const packed = built.filter((pkg) => pkg.tarball);
    await timed('lint', () => Promise.all(packed.map(lint)));

    // A package installs only with all its workspace dependencies packed.
    const installable = packed.filter((pkg) =>
      pkg.workspaceDeps.every((dep) => packed.some((other) => other.name === dep)),
    );
    for (const pkg of packed) if (!installable.includes(pkg)) record(pkg, 'install', null);
    const scratchDir = join(workDir, 'scratch');
    mkdirSync(scratchDir);
    if (
      installable.length > 0 &&
      (await timed('install', () => installScratch(installable, scratchDir)))
    ) {
      const expected = sourceExportNames(
        installable.flatMap((pkg) =>
          entries(pkg)
            .map((entry) => entry.source)
            .filter(Boolean),
        ),
      );
      await Promise.all([
        timed('types', () => typecheck(installable, scratchDir)),
        timed('import+bin', async () => {
          for (const pkg of installable) {
            await importCheck(pkg, scratchDir, expected);
            await binCheck(pkg, scratchDir);
          }
        }),
      ]);
    }
    printReport(packages);
    if (keep) console.log(`kept ${workDir}`);
    return failures.length === 0 ? 0 : 1;
  } finally {
    if (!keep) rmSync(workDir, { recursive: true, force: true });
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    console.error(`check-packages: ${error instanceof Error ? error.stack : error}`);
    process.exitCode = 1;
  },
);
