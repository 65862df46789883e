#!/usr/bin/env node
// Reference oracle: import files and trees with the JS UnixFS importer (ipfs-unixfs-importer
// 17.1.1, installed by tests/oracles/install.sh) using `ipfs add`'s semantics, many jobs per
// process so the differential tests pay node's start-up once.
//
// Usage: node unixfs_import.mjs NODE_MODULES < jobs.json > results.json
//
// jobs.json is a JSON array; each job is an object (absent or null keys take Kubo's defaults):
//   path                 absolute path of the file or directory to add (like `ipfs add -r PATH`)
//   paths                instead of path: several paths, only with wrapWithDirectory (`add -w P...`)
//   profile              "unixfs-v0-2015" | "legacy-cid-v0" | "unixfs-v1-2025": supplies defaults
//   cidVersion           0 | 1                                    (--cid-version; default 0)
//   rawLeaves            true | false                             (--raw-leaves; see below)
//   chunker              "size-N"                                 (--chunker; default size-262144)
//   layout               "balanced" | "trickle"                   (--trickle)
//   maxChildrenPerNode   N                                        (--max-file-links; default 174)
//   shardSplitThresholdBytes N           (Import.UnixFSHAMTDirectorySizeThreshold; default 262144)
//   shardSizeEstimation  "links" | "block" (Import.UnixFSHAMTDirectorySizeEstimation; default links)
//   shardFanout          N                (Import.UnixFSHAMTDirectoryMaxFanout; default 256)
//   wrapWithDirectory    bool                                     (-w)
//   hidden               bool: include dot-files below PATH       (-H; default false)
//   preserveMode         bool: store each file's and directory's permission bits (--preserve-mode)
//   preserveMtime        bool: store each entry's modification time (--preserve-mtime)
//   car                  path: also write a CARv1 of the DAG, blocks in `ipfs dag export` order
//
// Output: a JSON array, one result per job, in order:
//   {"root": CID, "rootType": UnixFS type of the root ("file", "directory",
//    "hamt-sharded-directory", ... or "raw"), "entries": [[relative path, CID], ...]}
//   or {"error": message}
// Entries are every path of the resulting DAG (read back from its blocks), which is what
// `ipfs add` prints: relative to PATH's parent, "" for a -w wrapper.
//
// How Kubo's semantics map onto the JS importer's options:
//   * A profile gives defaults the way Kubo's `ipfs config profile apply` writes Import.*: v0 =
//     CIDv0, raw leaves false, size-262144, 174 links, links estimation; v1 = CIDv1, raw leaves
//     true, size-1048576, 1024 links, block estimation. Explicit options win.
//   * CIDv1 implies raw leaves unless raw leaves were set (by option or by a profile), as in
//     kubo core/commands/add.go + coreiface/options/unixfs.go.
//   * Balanced layout: non-raw leaves are UnixFS type File and a one-chunk file is its own leaf
//     (JS leafType 'file', reduceSingleLeafToSelf). Trickle: leaves are UnixFS type Raw and the
//     root is always an internal node (JS leafType 'raw', no reduction), layer repeat 4 (boxo
//     trickle depthRepeat).
//   * Hidden files are skipped unless `hidden`; PATH itself is always added, as Kubo adds a
//     hidden path named on its command line.
//   * Only size-N chunking: the JS rabin chunker uses another polynomial than Kubo's.
//   * preserveMode/preserveMtime: Kubo turns raw leaves off and stores mode (12 bits, never on
//     symlinks) and mtime (nanoseconds only when non-zero) on file roots, directories and
//     (mtime only) symlinks. The JS importer matches that only where its quirks stay out of
//     the way: it drops mode 0644 on files and 0755 on directories (Kubo
//     writes them: use other modes), and it builds a one-chunk file with attributes correctly
//     only from a raw leaf. So a job with attributes must hold only one-chunk (or empty) files,
//     imported with JS raw leaves, or only multi-chunk files, imported without; a mix is an error
//     (trickle never reduces a file to its leaf, so it always imports without raw leaves).
//   * HAMT switch: every directory of the result is checked against Kubo's rule (HAMT iff its
//     final size estimate > threshold); the JS importer counts sub-directories it has not
//     flushed yet as 0, so a job where that changes the decision is an error, not an answer.
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const KUBO_DEFAULTS = {
  cidVersion: 0,
  chunker: 'size-262144', // chunk.DefaultBlockSize = 256 KiB
  maxChildrenPerNode: 174, // helpers.DefaultLinksPerBlock = 8192 / 47
  shardSplitThresholdBytes: 262144, // Import.UnixFSHAMTDirectorySizeThreshold default 256 KiB
  shardSizeEstimation: 'links',
  shardFanout: 256
}

const PROFILES = {
  'unixfs-v0-2015': {
    cidVersion: 0, rawLeaves: false, chunker: 'size-262144', maxChildrenPerNode: 174, shardSizeEstimation: 'links'
  },
  'unixfs-v1-2025': {
    cidVersion: 1, rawLeaves: true, chunker: 'size-1048576', maxChildrenPerNode: 1024, shardSizeEstimation: 'block'
  }
}
PROFILES['legacy-cid-v0'] = PROFILES['unixfs-v0-2015'] // Kubo keeps the old name as an alias

const TRICKLE_LAYER_REPEAT = 4 // boxo importer/trickle depthRepeat
const ESTIMATION_TO_JS = { links: 'links-bytes', block: 'block-bytes' }
const READ_CHUNK = 1 << 20 // 1 MiB reads: fewer stream callbacks on tens-of-MiB inputs

async function load (nodeModules, pkg, sub = '.') {
  const pj = JSON.parse(fs.readFileSync(path.join(nodeModules, pkg, 'package.json'), 'utf8'))
  let target = pj.exports?.[sub]
  if (typeof target === 'object' && target !== null) target = target.import ?? target.default
  if (target == null && sub === '.') target = pj.module ?? pj.main
  if (target == null) throw new Error(`cannot resolve ${pkg} ${sub} in ${nodeModules}`)
  return import(pathToFileURL(path.join(nodeModules, pkg, target)).href)
}

/** Resolve a job into the effective Kubo settings (profile defaults, then explicit options). */
function resolve (job) {
  const given = (k) => job[k] !== undefined && job[k] !== null
  let profile = {}
  if (given('profile')) {
    profile = PROFILES[job.profile]
    if (profile == null) throw new Error(`unknown profile ${job.profile}`)
  }
  const pick = (k) => given(k) ? job[k] : (profile[k] ?? KUBO_DEFAULTS[k])
  const cidVersion = pick('cidVersion')
  const rawLeaves = given('rawLeaves') ? job.rawLeaves : (profile.rawLeaves ?? cidVersion === 1)
  const layout = job.layout ?? 'balanced'
  if (layout !== 'balanced' && layout !== 'trickle') throw new Error(`unknown layout ${layout}`)
  const chunker = pick('chunker')
  const m = /^size-(\d+)$/.exec(chunker)
  if (m == null) throw new Error(`unsupported chunker ${chunker} (only size-N matches Kubo)`)
  const estimation = pick('shardSizeEstimation')
  if (ESTIMATION_TO_JS[estimation] == null) throw new Error(`unsupported size estimation ${estimation}`)
  const fanout = pick('shardFanout')
  const fanoutBits = Math.log2(fanout)
  if (!Number.isInteger(fanoutBits)) throw new Error(`fanout ${fanout} is not a power of two`)
  return {
    cidVersion,
    rawLeaves,
    layout,
    chunkSize: Number(m[1]),
    maxChildrenPerNode: pick('maxChildrenPerNode'),
    shardSplitThresholdBytes: pick('shardSplitThresholdBytes'),
    shardSplitStrategy: ESTIMATION_TO_JS[estimation],
    shardFanoutBits: fanoutBits,
    wrapWithDirectory: job.wrapWithDirectory === true,
    hidden: job.hidden === true,
    preserveMode: job.preserveMode === true,
    preserveMtime: job.preserveMtime === true
  }
}

const NS_PER_S = 1000000000n

/** Kubo's stored attributes of an entry: mode (12 permission bits) and mtime, as asked. */
function attributes (st, o, isSymlink) {
  const attrs = {}
  if (o.preserveMode && !isSymlink && (st.mode & 0o7777n) !== 0n) attrs.mode = Number(st.mode & 0o7777n)
  if (o.preserveMtime) {
    // Go's time.Unix split: seconds rounded down, nanoseconds in [0, 1e9), also before 1970
    let secs = st.mtimeNs / NS_PER_S
    let nsecs = st.mtimeNs % NS_PER_S
    if (nsecs < 0n) { secs -= 1n; nsecs += NS_PER_S }
    attrs.mtime = { secs, nsecs: nsecs === 0n ? undefined : Number(nsecs) }
  }
  return attrs
}

/** Import candidates for PATH, each directory before its children (the importer needs that). */
function * walk (abs, rel, o) {
  const st = fs.lstatSync(abs, { bigint: true })
  if (st.isSymbolicLink()) {
    yield { path: rel, link: fs.readlinkSync(abs), ...attributes(st, o, true) }
  } else if (st.isDirectory()) {
    yield { path: rel, ...attributes(st, o, false) }
    const names = fs.readdirSync(abs).filter((n) => o.hidden || !n.startsWith('.')).sort()
    for (const n of names) yield * walk(path.join(abs, n), `${rel}/${n}`, o)
  } else if (st.isFile()) {
    // small files in one read: a stream per file costs more than the import of a tiny file
    const content = st.size <= BigInt(READ_CHUNK)
      ? fs.readFileSync(abs)
      : fs.createReadStream(abs, { highWaterMark: READ_CHUNK })
    yield { path: rel, content, ...attributes(st, o, false) }
  } else {
    throw new Error(`unsupported file type: ${abs}`)
  }
}

/** Sizes of the regular files the walk will import. */
function fileSizes (abs, hidden) {
  const st = fs.lstatSync(abs)
  if (st.isFile()) return [st.size]
  if (!st.isDirectory()) return []
  return fs.readdirSync(abs).filter((n) => hidden || !n.startsWith('.'))
    .flatMap((n) => fileSizes(path.join(abs, n), hidden))
}

/** The absolute paths a job adds. */
function jobPaths (job) {
  const paths = job.paths ?? [job.path]
  if (paths.length !== 1 && job.wrapWithDirectory !== true) throw new Error('several paths need wrapWithDirectory')
  return paths.map((p) => path.resolve(p))
}

/** JS raw-leaves setting that reproduces Kubo's attribute-carrying files (see the header). */
function rawLeavesForAttributes (job, o) {
  if (job.rawLeaves === true) throw new Error('Kubo refuses --raw-leaves with --preserve-mode/--preserve-mtime')
  if (o.layout === 'trickle') return false
  const sizes = jobPaths(job).flatMap((p) => fileSizes(p, o.hidden))
  const single = sizes.filter((n) => n <= o.chunkSize).length
  if (single !== 0 && single !== sizes.length) {
    throw new Error('with attributes the JS importer needs all files single-chunk or all multi-chunk')
  }
  return single !== 0
}

/** CIDs of the blocks reachable from root, depth-first pre-order, links in stored order, once. */
function dfsPreOrder (rootKey, blocks, dagPb) {
  const order = []
  const seen = new Set()
  const stack = [rootKey]
  while (stack.length > 0) {
    const k = stack.pop()
    if (seen.has(k)) continue
    seen.add(k)
    const b = blocks.get(k)
    if (b == null) throw new Error(`block ${k} missing from the store`)
    order.push(k)
    if (b.cid.code === dagPb.code) {
      const links = dagPb.decode(b.bytes).Links
      for (let i = links.length - 1; i >= 0; i--) stack.push(links[i].Hash.toString())
    }
  }
  return order
}

const utf8 = new TextEncoder()
const varintLen = (n) => { let len = 1; while (n >= 128) { n = Math.floor(n / 128); len++ } return len }
const fieldLen = (len) => 1 + varintLen(len) + len // one protobuf bytes field: tag, length, body

/**
 * Kubo's size estimate of a directory with these entries (boxo io/directory.go): `links` =
 * Σ name bytes + CID bytes; `block` = the exact size of the basic-directory PBNode.
 */
function kuboDirEstimate (children, unixfs, o, lib) {
  if (o.shardSplitStrategy === 'links-bytes') {
    return children.reduce((n, c) => n + utf8.encode(c.name).length + c.cid.bytes.length, 0)
  }
  const data = new lib.UnixFS({ type: 'directory', mode: unixfs.mode, mtime: unixfs.mtime }).marshal()
  return children.reduce((n, c) => n + fieldLen(
    fieldLen(c.cid.bytes.length) + fieldLen(utf8.encode(c.name).length) + 1 + varintLen(c.tsize)), fieldLen(data.length))
}

/**
 * Every path in the DAG below root and its CID, as `ipfs add` prints them: the importer itself
 * only yields files, symlinks and non-empty basic directories, so read the tree back instead,
 * through basic directories and HAMT shards (link name = bucket prefix [+ entry name]).
 *
 * Also checks each directory's form against Kubo's rule (HAMT iff the final estimate exceeds
 * the threshold): the JS importer leaves sub-directories it has not flushed yet out of its
 * estimate, so near the threshold it can decide otherwise than Kubo; such a job is an error,
 * never a silent wrong answer.
 */
function listPaths (rootKey, rootPath, blocks, lib, o) {
  const out = []
  const join = (p, name) => p === '' ? name : `${p}/${name}`
  const decode = (key) => {
    const b = blocks.get(key)
    if (b == null) throw new Error(`block ${key} missing from the store`)
    if (b.cid.code !== lib.dagPb.code) return null
    const node = lib.dagPb.decode(b.bytes)
    return { node, unixfs: lib.UnixFS.unmarshal(node.Data) }
  }
  const shardEntries = (node, unixfs) => {
    const pad = (Number(unixfs.fanout) - 1).toString(16).length
    return node.Links.flatMap((l) => {
      if (l.Name.length !== pad) return [{ name: l.Name.slice(pad), cid: l.Hash, tsize: l.Tsize }]
      const sub = decode(l.Hash.toString())
      return shardEntries(sub.node, sub.unixfs)
    })
  }
  const visit = (key, p) => {
    out.push([p, key])
    const d = decode(key)
    if (d == null) return
    const sharded = d.unixfs.type === 'hamt-sharded-directory'
    if (d.unixfs.type !== 'directory' && !sharded) return
    const children = sharded
      ? shardEntries(d.node, d.unixfs)
      : d.node.Links.map((l) => ({ name: l.Name, cid: l.Hash, tsize: l.Tsize }))
    const estimate = kuboDirEstimate(children, d.unixfs, o, lib)
    if (sharded !== (estimate > o.shardSplitThresholdBytes)) {
      throw new Error(`JS importer ${sharded ? 'sharded' : 'did not shard'} ${p || '(wrapper)'} although ` +
        `Kubo's estimate is ${estimate} against a threshold of ${o.shardSplitThresholdBytes}`)
    }
    for (const c of children) visit(c.cid.toString(), join(p, c.name))
  }
  visit(rootKey, rootPath)
  return out
}

async function writeCar (file, rootKey, blocks, dagPb, CarWriter) {
  const { writer, out } = CarWriter.create([blocks.get(rootKey).cid])
  const parts = []
  const drain = (async () => { for await (const part of out) parts.push(part) })()
  for (const k of dfsPreOrder(rootKey, blocks, dagPb)) {
    const { cid, bytes } = blocks.get(k)
    await writer.put({ cid, bytes })
  }
  await writer.close()
  await drain
  fs.writeFileSync(file, Buffer.concat(parts))
}

async function runJob (job, lib) {
  const o = resolve(job)
  if (o.preserveMode || o.preserveMtime) o.rawLeaves = rawLeavesForAttributes(job, o)
  const blocks = new Map() // CID string -> { cid, bytes }, first put wins
  const store = {
    put: async (cid, bytes) => {
      const k = cid.toString()
      if (!blocks.has(k)) blocks.set(k, { cid, bytes })
      return cid
    }
  }
  const layout = o.layout === 'balanced'
    ? lib.layout.balanced({ maxChildrenPerNode: o.maxChildrenPerNode })
    : lib.layout.trickle({ maxChildrenPerNode: o.maxChildrenPerNode, layerRepeat: TRICKLE_LAYER_REPEAT })
  const trickle = o.layout === 'trickle'
  const options = {
    cidVersion: o.cidVersion,
    rawLeaves: o.rawLeaves,
    leafType: trickle ? 'raw' : 'file',
    reduceSingleLeafToSelf: !trickle,
    chunker: lib.chunker.fixedSize({ chunkSize: o.chunkSize }),
    layout,
    shardSplitThresholdBytes: o.shardSplitThresholdBytes,
    shardSplitStrategy: o.shardSplitStrategy,
    shardFanoutBits: o.shardFanoutBits,
    wrapWithDirectory: o.wrapWithDirectory,
    fieldOrder: 'links-first',
    fileImportConcurrency: 1,
    blockWriteConcurrency: 1
  }
  const candidates = function * () {
    for (const abs of jobPaths(job)) yield * walk(abs, path.basename(abs), o)
  }
  const yielded = []
  let rootType
  for await (const e of lib.importer(candidates(), store, options)) {
    yielded.push([e.path ?? '', e.cid.toString()])
    rootType = e.unixfs?.type ?? 'raw' // a raw leaf has no UnixFS message
  }
  const [rootPath, root] = yielded[yielded.length - 1]
  const entries = listPaths(root, rootPath, blocks, lib, o)
  // cross-check: everything the importer yielded is in the DAG (not by path: a HAMT-sharded
  // directory yields its sub-entries under its own path)
  const inDag = new Set(entries.map(([, cid]) => cid))
  for (const [p, cid] of yielded) {
    if (!inDag.has(cid)) throw new Error(`importer yielded ${p} = ${cid}, which is not in its DAG`)
  }
  if (job.car != null) await writeCar(job.car, root, blocks, lib.dagPb, lib.CarWriter)
  return { root, rootType, entries }
}

async function main () {
  const nodeModules = process.argv[2]
  if (nodeModules == null) throw new Error('usage: node unixfs_import.mjs NODE_MODULES < jobs.json')
  const lib = {
    importer: (await load(nodeModules, 'ipfs-unixfs-importer')).importer,
    chunker: await load(nodeModules, 'ipfs-unixfs-importer', './chunker'),
    layout: await load(nodeModules, 'ipfs-unixfs-importer', './layout'),
    dagPb: await load(nodeModules, '@ipld/dag-pb'),
    UnixFS: (await load(nodeModules, 'ipfs-unixfs')).UnixFS,
    CarWriter: (await load(nodeModules, '@ipld/car', './writer')).CarWriter
  }
  const jobs = JSON.parse(fs.readFileSync(0, 'utf8'))
  const results = []
  for (const job of jobs) {
    try {
      results.push(await runJob(job, lib))
    } catch (err) {
      results.push({ error: String(err?.message ?? err) })
    }
  }
  process.stdout.write(JSON.stringify(results) + '\n')
}

main().catch((err) => { console.error('unixfs_import.mjs:', err?.stack ?? err); process.exit(1) })
