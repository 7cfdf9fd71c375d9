// A Glueberry v1 peer on js-libp2p (TCP + Noise + yamux), written from docs/protocol.md, for
// the interop tests (tests/js_peer.rs). It is not a translation of the Rust code.
//
//   node peer.mjs vectors <glueberry-v1.json>        check framing and crypto against the Go vectors
//   node peer.mjs run [--dial <multiaddr>] [--node-key <hex>] [--script <name>]
//
// `run` prints one JSON object per line on stdout: {"listening": addr, "peer": id} first, then
// what it did and received. Its script, once the byte-tag handshake is done:
//   echo    - every message received on `messages` is sent back on `messages`; stdin "quit" ends
//   bulk    - sends 100 × 64 KiB on `bulk`, then echoes as above
//   race    - sends 100 messages on `messages` at once with the node (Go's stream rule: keep our
//             own stream, reset a second inbound one), then echoes
//   garbage - after the handshake, writes a frame whose length prefix overflows on `messages`

import crypto from 'node:crypto'
import fs from 'node:fs'
import readline from 'node:readline'

import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { ed25519, x25519 } from '@noble/curves/ed25519.js'
import { createLibp2p } from 'libp2p'

// js-libp2p 3 expects Node.js 22's Promise.withResolvers; the machines here run Node.js 20.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const HELLO = 1
const PUBKEY = 2
const COMPLETE = 3
const MAX_MESSAGE = 1024 * 1024
const PROTOCOL = (name) => `/glueberry/stream/${name}/1.0.0`

// -- §3 framing: uvarint(L_outer) ‖ uvarint(L_inner) ‖ body --------------------------------

function uvarint (n) {
  const out = []
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80)
    n = Math.floor(n / 0x80)
  }
  out.push(n)
  return Uint8Array.from(out)
}

function frame (body) {
  const inner = Buffer.concat([uvarint(body.length), body])
  return Buffer.concat([uvarint(inner.length), inner])
}

// Reads a uvarint at `off` of `buf`: [value, next offset], or null if more bytes are needed.
function readUvarint (buf, off) {
  let value = 0
  let scale = 1
  for (let i = 0; i < 10; i++) {
    if (off + i >= buf.length) return null
    const b = buf[off + i]
    if (i === 9 && b > 1) throw new Error('length prefix overflows u64')
    value += (b & 0x7f) * scale
    if ((b & 0x80) === 0) return [value, off + i + 1]
    scale *= 0x80
  }
  throw new Error('length prefix overflows u64')
}

// Splits a byte stream into frame bodies.
class Deframer {
  constructor (max) {
    this.buf = Buffer.alloc(0)
    this.max = max
  }

  push (chunk) {
    this.buf = Buffer.concat([this.buf, chunk])
    const out = []
    for (;;) {
      const outer = readUvarint(this.buf, 0)
      if (outer === null) break
      const [len, start] = outer
      if (len === 0) throw new Error('empty frame')
      if (len > this.max) throw new Error(`frame of ${len} bytes over the limit`)
      if (this.buf.length < start + len) break
      const f = this.buf.subarray(start, start + len)
      const inner = readUvarint(f, 0)
      if (inner === null || inner[1] + inner[0] > f.length) throw new Error('inner length past the frame')
      out.push(Buffer.from(f.subarray(inner[1], inner[1] + inner[0])))
      this.buf = this.buf.subarray(start + len)
    }
    return out
  }
}

// -- §4 keys and bodies --------------------------------------------------------------------

function x25519Secret (seed) {
  const k = crypto.createHash('sha512').update(seed).digest().subarray(0, 32)
  k[0] &= 248
  k[31] &= 127
  k[31] |= 64
  return k
}

function streamKey (localSeed, remoteEd25519Pub) {
  const remote = ed25519.utils.toMontgomery(remoteEd25519Pub)
  const shared = x25519.getSharedSecret(x25519Secret(localSeed), remote)
  if (shared.every((b) => b === 0)) throw new Error('low-order point')
  return Buffer.from(crypto.hkdfSync('sha256', shared, Buffer.alloc(0), 'glueberry-v1-stream-key', 32))
}

function seal (key, plaintext, nonce = crypto.randomBytes(12)) {
  const c = crypto.createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 })
  const ct = Buffer.concat([c.update(plaintext), c.final()])
  return Buffer.concat([nonce, ct, c.getAuthTag()])
}

function open (key, body) {
  if (body.length < 28) throw new Error('body shorter than 28 bytes')
  const d = crypto.createDecipheriv('chacha20-poly1305', key, body.subarray(0, 12), { authTagLength: 16 })
  d.setAuthTag(body.subarray(body.length - 16))
  return Buffer.concat([d.update(body.subarray(12, body.length - 16)), d.final()])
}

// -- the vectors ---------------------------------------------------------------------------

function vectors (path) {
  const v = JSON.parse(fs.readFileSync(path, 'utf8'))
  const hex = (s) => Buffer.from(s, 'hex')
  let checked = 0
  const eq = (a, b, what) => {
    if (Buffer.compare(Buffer.from(a), Buffer.from(b)) !== 0) throw new Error(`vector mismatch: ${what}`)
    checked++
  }
  const A = v.keys.A
  const B = v.keys.B
  const key = streamKey(hex(A.seed ?? A.ed25519_seed), hex(B.ed25519_pub ?? B.public))
  eq(key, hex(v.ecdh.shared_key), 'stream key from A')
  eq(streamKey(hex(B.seed ?? B.ed25519_seed), hex(A.ed25519_pub ?? A.public)), key, 'stream key from B')
  for (const [name, c] of Object.entries(v.aead)) {
    if (typeof c !== 'object' || !c.nonce) continue
    const sealed = seal(key, hex(c.plaintext), hex(c.nonce))
    eq(sealed, hex(c.body ?? c.sealed), `aead ${name}`)
    eq(open(key, sealed), hex(c.plaintext), `open ${name}`)
  }
  for (const f of v.frames) {
    eq(frame(hex(f.body)), hex(f.frame), `frame ${f.name}`)
    eq(new Deframer(64 << 20).push(hex(f.frame))[0], hex(f.body), `deframe ${f.name}`)
  }
  console.log(JSON.stringify({ vectors: 'ok', checked }))
}

// -- a node --------------------------------------------------------------------------------

function emit (o) {
  process.stdout.write(JSON.stringify(o) + '\n')
}

async function run (args) {
  const seed = crypto.randomBytes(32)
  const privateKey = await generateKeyPairFromSeed('Ed25519', seed)
  const myPub = Buffer.from(privateKey.publicKey.raw)
  const node = await createLibp2p({
    privateKey,
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()]
  })
  const script = args.script ?? 'echo'
  let key = null
  let remote = null
  // One stream per name, Go's rule: whichever comes first is kept; a second inbound one is reset.
  const streams = new Map()
  let handshakeDone
  const handshaken = new Promise((resolve) => { handshakeDone = resolve })

  function read (name, stream) {
    const d = new Deframer(MAX_MESSAGE + 64)
    stream.addEventListener('message', (evt) => {
      let bodies
      try {
        bodies = d.push(Buffer.from(evt.data.subarray()))
      } catch (e) {
        emit({ error: String(e), stream: name })
        stream.abort(e)
        return
      }
      for (const body of bodies) onMessage(name, body)
    })
    stream.addEventListener('close', () => {
      if (streams.get(name) === stream) streams.delete(name)
    })
  }

  function keep (name, stream) {
    streams.set(name, stream)
    read(name, stream)
  }

  async function writer (name) {
    let s = streams.get(name)
    if (s === undefined) {
      s = await node.dialProtocol(remote, PROTOCOL(name))
      const again = streams.get(name)
      if (again !== undefined) {
        s.abort(new Error('a stream of this name is stored'))
        return again
      }
      keep(name, s)
    }
    return s
  }

  async function send (name, data) {
    const s = await writer(name)
    const body = name === 'handshake' ? data : seal(key, data)
    if (!s.send(frame(body))) {
      await new Promise((resolve) => s.addEventListener('drain', resolve, { once: true }))
    }
  }

  let sentHello = false
  async function onMessage (name, body) {
    if (name === 'handshake') {
      const tag = body[0]
      if (tag === HELLO) {
        if (!sentHello) { sentHello = true; await send('handshake', Buffer.from([HELLO])) }
        await send('handshake', Buffer.concat([Buffer.from([PUBKEY]), myPub]))
      } else if (tag === PUBKEY) {
        key = streamKey(seed, body.subarray(1, 33))
        await send('handshake', Buffer.from([COMPLETE]))
      } else if (tag === COMPLETE) {
        emit({ handshake: 'complete' })
        handshakeDone()
      }
      return
    }
    let plain
    try {
      plain = open(key, body)
    } catch (e) {
      emit({ error: String(e), stream: name })
      return
    }
    emit({ received: name, len: plain.length, sha256: crypto.createHash('sha256').update(plain).digest('hex') })
    if (name === 'messages') await send('messages', plain)
  }

  for (const name of ['handshake', 'messages', 'bulk']) {
    await node.handle(PROTOCOL(name), (stream, connection) => {
      remote = remote ?? connection.remotePeer
      if (streams.has(name)) {
        stream.abort(new Error('Go rule: a stream of this name is stored'))
        emit({ reset: name })
        return
      }
      keep(name, stream)
    }, { runOnLimitedConnection: true })
  }
  node.addEventListener('peer:connect', (evt) => {
    remote = remote ?? evt.detail
  })

  emit({ listening: node.getMultiaddrs()[0].toString(), peer: node.peerId.toString() })
  if (args.dial) {
    const conn = await node.dial(multiaddr(args.dial))
    remote = conn.remotePeer
    sentHello = true
    await send('handshake', Buffer.from([HELLO]))
  }
  await handshaken
  if (script === 'bulk') {
    const m = Buffer.alloc(64 * 1024, 7)
    for (let i = 0; i < 100; i++) await send('bulk', m)
    emit({ sent: 'bulk', count: 100 })
  } else if (script === 'race') {
    for (let i = 0; i < 100; i++) await send('messages', Buffer.from(`js ${i}`))
    emit({ sent: 'messages', count: 100 })
  } else if (script === 'garbage') {
    const s = await writer('messages')
    s.send(Buffer.from('ffffffffffffffffff02', 'hex'))
    emit({ sent: 'garbage' })
  }
  const rl = readline.createInterface({ input: process.stdin })
  for await (const line of rl) {
    if (line.trim() === 'quit') break
  }
  await node.stop()
  process.exit(0)
}

function parse (argv) {
  const args = {}
  for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, '').replace(/-/g, '_')] = argv[i + 1]
  return args
}

const [cmd, ...rest] = process.argv.slice(2)
if (cmd === 'vectors') {
  vectors(rest[0])
} else if (cmd === 'run') {
  run(parse(rest)).catch((e) => { emit({ fatal: String(e.stack ?? e) }); process.exit(1) })
} else {
  console.error('usage: peer.mjs vectors <file> | run [--dial <addr>] [--script echo|bulk|race|garbage]')
  process.exit(2)
}
