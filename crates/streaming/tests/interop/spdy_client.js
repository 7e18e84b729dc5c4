'use strict'
// Interop client: drives husk's streaming server with the npm `spdy-transport` package.
// Usage: node spdy_client.js MODE URL [ARG]; prints one JSON document describing what it saw.
// SPDY_TRANSPORT names the directory holding node_modules/spdy-transport.
const crypto = require('crypto')
const net = require('net')

const transport = require(require.resolve('spdy-transport', {
  paths: [process.env.SPDY_TRANSPORT || __dirname]
}))

const [mode, rawUrl, arg] = process.argv.slice(2)
const url = new URL(rawUrl)

function upgrade (protocols) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(url.port), url.hostname)
    sock.once('connect', () => {
      let req = `POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\n` +
        'Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n'
      for (const p of protocols) req += `X-Stream-Protocol-Version: ${p}\r\n`
      sock.write(req + '\r\n')
    })
    let buf = Buffer.alloc(0)
    const onData = (d) => {
      buf = Buffer.concat([buf, d])
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) return
      sock.removeListener('data', onData)
      sock.pause()
      const head = buf.slice(0, end).toString()
      const rest = buf.slice(end + 4)
      if (rest.length) sock.unshift(rest)
      if (Number(head.split(' ')[1]) !== 101) return reject(new Error('upgrade refused: ' + head))
      const proto = (head.match(/x-stream-protocol-version: *(.*)/i) || [])[1]
      resolve({ sock, proto: proto && proto.trim() })
    }
    sock.on('data', onData)
    sock.on('error', reject)
  })
}

function connect (sock) {
  const conn = transport.connection.create(sock, { protocol: 'spdy', isServer: false })
  conn.start(3.1)
  conn.on('error', (e) => { console.error('connection error', e); process.exit(3) })
  return conn
}

// spdy-transport's scheduler may put a later SYN_STREAM on the wire before an earlier one,
// which SPDY/3 (and kubelet's spdystream) refuse: open streams one reply at a time.
async function open (conn, headers, onChunk) {
  const stream = conn.request({ method: 'POST', path: '/', headers })
  const chunks = []
  const done = new Promise((resolve, reject) => {
    stream.on('data', (c) => (onChunk ? onChunk(c) : chunks.push(c)))
    stream.on('end', () => resolve(Buffer.concat(chunks)))
    stream.on('error', reject)
  })
  await new Promise((resolve, reject) => {
    stream.once('response', resolve)
    stream.once('error', reject)
  })
  return { stream, done }
}

async function main () {
  let out
  if (mode === 'exec-echo') {
    const { sock, proto } = await upgrade(['v4.channel.k8s.io'])
    const conn = connect(sock)
    const error = await open(conn, { streamtype: 'error' })
    const stdin = await open(conn, { streamtype: 'stdin' })
    const stdout = await open(conn, { streamtype: 'stdout' })
    stdin.stream.end(Buffer.from(arg))
    out = { protocol: proto, stdout: (await stdout.done).toString(), status: (await error.done).toString() }
  } else if (mode === 'exec-exit') {
    const { sock, proto } = await upgrade(['v4.channel.k8s.io'])
    const conn = connect(sock)
    const error = await open(conn, { streamtype: 'error' })
    const stdout = await open(conn, { streamtype: 'stdout' })
    const stderr = await open(conn, { streamtype: 'stderr' })
    out = {
      protocol: proto,
      stdout: (await stdout.done).toString(),
      stderr: (await stderr.done).toString(),
      status: JSON.parse((await error.done).toString())
    }
  } else if (mode === 'exec-big') {
    const total = Number(arg) << 20
    const { sock } = await upgrade(['v4.channel.k8s.io'])
    const conn = connect(sock)
    const error = await open(conn, { streamtype: 'error' })
    const stdin = await open(conn, { streamtype: 'stdin' })
    const got = crypto.createHash('sha256')
    let received = 0
    const stdout = await open(conn, { streamtype: 'stdout' }, (c) => { got.update(c); received += c.length })
    const sent = crypto.createHash('sha256')
    const chunk = crypto.randomBytes(64 * 1024)
    let written = 0
    await new Promise((resolve) => {
      const pump = () => {
        while (written < total) {
          sent.update(chunk)
          written += chunk.length
          if (!stdin.stream.write(chunk)) return stdin.stream.once('drain', pump)
        }
        stdin.stream.end()
        resolve()
      }
      pump()
    })
    await stdout.done
    out = { sent: sent.digest('hex'), received: got.digest('hex'), bytes: received, status: (await error.done).toString() }
  } else if (mode === 'portforward') {
    const { sock, proto } = await upgrade(['portforward.k8s.io'])
    const conn = connect(sock)
    const port = process.argv[5]
    const error = await open(conn, { streamtype: 'error', port, requestid: '0' })
    const data = await open(conn, { streamtype: 'data', port, requestid: '0' })
    data.stream.end(Buffer.from(arg))
    out = { protocol: proto, data: (await data.done).toString(), error: (await error.done).toString() }
  } else {
    throw new Error('unknown mode ' + mode)
  }
  process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0))
}

main().catch((e) => { console.error(e); process.exit(2) })
