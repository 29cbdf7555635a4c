// Upload one file to assetd's tus endpoint with tus-js-client under Node, and print one JSON
// line saying how it ended. Driven by tests/integration/uploads/test_tus_clients.py.
//
//   node tus_upload.mjs --file PATH --key KEY --chunk-size BYTES
//        (--endpoint URL [--stop-after BYTES] | --upload-url URL) [--name NAME] [--tags a,b]
//
// --endpoint creates a new upload (its first chunk in the POST: creation-with-upload);
// --stop-after aborts it as soon as that many bytes have gone out, in the middle of a PATCH.
// --upload-url resumes an existing upload and never creates one: without an endpoint,
// tus-js-client fails rather than silently starting over.
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { basename } from 'node:path'
import { parseArgs } from 'node:util'

import { Upload } from 'tus-js-client'

const { values: args } = parseArgs({
  options: {
    endpoint: { type: 'string' },
    'upload-url': { type: 'string' },
    key: { type: 'string' },
    file: { type: 'string' },
    'chunk-size': { type: 'string' },
    'stop-after': { type: 'string' },
    name: { type: 'string' },
    tags: { type: 'string' },
  },
  strict: true,
})

for (const required of ['key', 'file', 'chunk-size']) {
  if (!args[required]) throw new Error(`--${required} is required`)
}
if (!args.endpoint === !args['upload-url']) {
  throw new Error('give exactly one of --endpoint (new upload) or --upload-url (resume)')
}
const stopAfter = args['stop-after'] ? Number(args['stop-after']) : null
const size = (await stat(args.file)).size

const result = { url: null, assetId: null, assetVersion: null, resumedFrom: null, patches: 0 }
// Requests sent and not yet answered: non-zero at abort time means a PATCH was cut off.
let inFlight = 0
let stopped = false

function finish(event, extra = {}) {
  process.stdout.write(`${JSON.stringify({ event, ...result, ...extra })}\n`)
}

const metadata = { filename: basename(args.file) }
if (args.name) metadata.name = args.name
if (args.tags) metadata.tags = args.tags

const upload = new Upload(createReadStream(args.file), {
  endpoint: args.endpoint,
  uploadUrl: args['upload-url'],
  uploadSize: size,
  chunkSize: Number(args['chunk-size']),
  uploadDataDuringCreation: Boolean(args.endpoint),
  headers: { Authorization: `Bearer ${args.key}` },
  metadata,
  // Any failure should reach the test as it happened, not be papered over by a retry.
  retryDelays: null,
  storeFingerprintForResuming: false,
  onBeforeRequest(req) {
    inFlight += 1
    if (req.getMethod() === 'PATCH') result.patches += 1
  },
  onAfterResponse(req, res) {
    inFlight -= 1
    const method = req.getMethod()
    if (method === 'HEAD') result.resumedFrom = Number(res.getHeader('Upload-Offset'))
    result.assetId = res.getHeader('X-Asset-Id') ?? result.assetId
    result.assetVersion = res.getHeader('X-Asset-Version') ?? result.assetVersion
  },
  onUploadUrlAvailable() {
    result.url = upload.url
  },
  onProgress(bytesSent, bytesTotal) {
    if (stopAfter !== null && bytesSent >= stopAfter && !stopped) {
      stopped = true
      const cutOff = inFlight > 0
      upload.abort().then(() => finish('aborted', { bytesSent, bytesTotal, cutOff }))
    }
  },
  onSuccess() {
    result.url = upload.url
    finish('success', { bytesTotal: size })
  },
  onError(error) {
    finish('error', { error: String(error) })
    process.exitCode = 1
  },
})

upload.start()
