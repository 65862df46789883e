// Loaded with `node --import` before js-ipfs and Helia: Node < 22 lacks Promise.withResolvers,
// which js-ipfs 0.66's dependencies and Helia 7's it-queue call.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve
    let reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
