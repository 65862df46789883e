// A real verifying IPFS client for tests/test_gateway_*.py: @helia/verified-fetch over Helia
// light, fetching blocks from one trustless gateway over HTTP and checking every one.
//
// Usage: node --import polyfill.mjs verified_fetch.mjs NODE_MODULES < request.json
//   request.json: {"gateway": "http://127.0.0.1:PORT", "timeoutMs": 30000,
//                  "fetches": [{"url": "ipfs://CID/path", "out": "/file/to/write"}, ...]}
// Prints one JSON line per fetch: {"url", "status", "contentType", "bytes"} or {"url", "error"}.
//
// How the gateway is reached (found by experiment with Helia 7 / verified-fetch 8): http://
// and loopback gateways are ignored unless withHTTP gets allowInsecure and allowLocal, and a
// gateway given only as a fallback is never asked; so a router names the gateway as the provider
// of every CID (transport-ipfs-gateway-http), and the HTTP block broker fetches ?format=raw
// blocks from it. No libp2p, no other router, nothing leaves the machine.
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

async function load (nodeModules, pkg, sub = '.') {
  const pj = JSON.parse(fs.readFileSync(path.join(nodeModules, pkg, 'package.json'), 'utf8'))
  let target = pj.exports?.[sub]
  if (typeof target === 'object' && target !== null) target = target.import ?? target.default
  if (target == null && sub === '.') target = pj.module ?? pj.main
  if (target == null) throw new Error(`cannot resolve ${pkg} ${sub} in ${nodeModules}`)
  return import(pathToFileURL(path.join(nodeModules, pkg, target)).href)
}

const nodeModules = process.argv[2]
if (nodeModules == null) throw new Error('usage: node verified_fetch.mjs NODE_MODULES < request.json')
const request = JSON.parse(fs.readFileSync(0, 'utf8'))
const { createHeliaLight } = await load(nodeModules, 'helia')
const { withHTTP } = await load(nodeModules, '@helia/http')
const { createVerifiedFetchWithHelia } = await load(nodeModules, '@helia/verified-fetch')
const dagCbor = await load(nodeModules, '@ipld/dag-cbor')
const { uriToMultiaddr } = await load(nodeModules, '@multiformats/uri-to-multiaddr')
const { CID } = await load(nodeModules, 'multiformats', './cid')
const { identity } = await load(nodeModules, 'multiformats', './hashes/identity')

// Without a pending timer Node exits 13 ("unsettled top-level await") when a fetch never settles.
const keepAlive = setInterval(() => {}, 1000)
const helia = withHTTP(createHeliaLight({ codecs: [dagCbor] }), {
  recursiveGateways: [], delegatedRouters: [], allowInsecure: true, allowLocal: true
})
const provider = {
  id: CID.createV1(0x0920, identity.digest(new TextEncoder().encode(request.gateway))),
  multiaddrs: [uriToMultiaddr(request.gateway)]
}
helia.addRouter({
  name: 'test-gateway',
  async * findProviders () {
    yield { ...provider, protocols: ['transport-ipfs-gateway-http'], router: 'test-gateway' }
  },
  toString: () => 'test-gateway'
})
await helia.start()
const vf = await createVerifiedFetchWithHelia(helia)
for (const { url, out } of request.fetches) {
  try {
    const response = await vf(url, { signal: AbortSignal.timeout(request.timeoutMs ?? 30000) })
    const body = Buffer.from(await response.arrayBuffer())
    fs.writeFileSync(out, body)
    console.log(JSON.stringify({ url, status: response.status, contentType: response.headers.get('content-type'), bytes: body.length }))
  } catch (e) {
    console.log(JSON.stringify({ url, error: `${e.name}: ${e.message}` }))
  }
}
clearInterval(keepAlive)
await vf.stop()
