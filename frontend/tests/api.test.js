import { afterEach, describe, expect, it, vi } from 'vitest'
import { ApiError, getHealth, modelCardHref, predictFile, predictUrl, sendFeedback } from '../src/api.js'

function jsonResponse(status, body) {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
}

afterEach(() => vi.unstubAllGlobals())

describe('api', () => {
  it('uploads the file as multipart field "image" and asks for crops', async () => {
    const fetchMock = vi.fn(async () => jsonResponse(200, { verdict: 'real', faces: [] }))
    vi.stubGlobal('fetch', fetchMock)
    const file = new File([new Uint8Array([1, 2, 3])], 'me.jpg', { type: 'image/jpeg' })
    const body = await predictFile(file)
    expect(body.verdict).toBe('real')
    const [url, init] = fetchMock.mock.calls[0]
    expect(url).toBe('/api/predict?crops=1')
    expect(init.method).toBe('POST')
    expect(init.body).toBeInstanceOf(FormData)
    const sent = init.body.get('image')
    expect(sent.name).toBe('me.jpg')
    expect(sent.size).toBe(3)
  })

  it('sends a link as JSON {url}', async () => {
    const fetchMock = vi.fn(async () => jsonResponse(200, { verdict: 'fake', faces: [] }))
    vi.stubGlobal('fetch', fetchMock)
    await predictUrl('https://example.org/a.jpg')
    const [url, init] = fetchMock.mock.calls[0]
    expect(url).toBe('/api/predict?crops=1')
    expect(init.headers['Content-Type']).toBe('application/json')
    expect(JSON.parse(init.body)).toEqual({ url: 'https://example.org/a.jpg' })
  })

  it('turns an error body into an ApiError with its code and status', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => jsonResponse(422, { error: { code: 'no_face', message: 'No face.' } })))
    const err = await predictUrl('https://example.org/cat.jpg').catch((e) => e)
    expect(err).toBeInstanceOf(ApiError)
    expect(err.code).toBe('no_face')
    expect(err.status).toBe(422)
    expect(err.message).toBe('No face.')
  })

  it('calls a non-JSON failure "unknown" and a refused connection "network"', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => new Response('<h1>Bad gateway</h1>', { status: 502 })))
    expect((await getHealth().catch((e) => e)).code).toBe('unknown')
    vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new TypeError('Failed to fetch'))))
    expect((await getHealth().catch((e) => e)).code).toBe('network')
  })

  it('gives up after the timeout with client_timeout', async () => {
    vi.stubGlobal(
      'fetch',
      vi.fn(
        (_url, init) =>
          new Promise((_resolve, reject) => init.signal.addEventListener('abort', () => reject(init.signal.reason))),
      ),
    )
    const err = await getHealth({ timeoutMs: 20 }).catch((e) => e)
    expect(err.code).toBe('client_timeout')
  })

  it('asks for heat maps only when told the model can explain', async () => {
    const fetchMock = vi.fn(async () => jsonResponse(200, { verdict: 'real', faces: [] }))
    vi.stubGlobal('fetch', fetchMock)
    const file = new File([new Uint8Array([1])], 'me.jpg', { type: 'image/jpeg' })
    await predictFile(file, { explain: true })
    await predictUrl('https://example.org/a.jpg', { explain: true })
    await predictFile(file, { explain: false })
    expect(fetchMock.mock.calls.map(([url]) => url)).toEqual([
      '/api/predict?crops=1&explain=1',
      '/api/predict?crops=1&explain=1',
      '/api/predict?crops=1',
    ])
  })

  it('asks again without heat maps when the server cannot explain (health was stale)', async () => {
    const fetchMock = vi.fn(async (url) =>
      url.includes('explain=1')
        ? jsonResponse(501, { error: { code: 'explain_unavailable', message: 'No Grad-CAM.' } })
        : jsonResponse(200, { verdict: 'fake', faces: [] }),
    )
    vi.stubGlobal('fetch', fetchMock)
    const file = new File([new Uint8Array([1, 2])], 'me.jpg', { type: 'image/jpeg' })
    expect((await predictFile(file, { explain: true })).verdict).toBe('fake')
    expect(fetchMock.mock.calls.map(([url]) => url)).toEqual(['/api/predict?crops=1&explain=1', '/api/predict?crops=1'])
    // The retry sends the whole file again, not an emptied form.
    expect(fetchMock.mock.calls[1][1].body.get('image').size).toBe(2)

    fetchMock.mockClear()
    expect((await predictUrl('https://example.org/a.jpg', { explain: true })).verdict).toBe('fake')
    expect(JSON.parse(fetchMock.mock.calls[1][1].body)).toEqual({ url: 'https://example.org/a.jpg' })
  })

  it('passes other errors of an explain request through without retrying', async () => {
    const fetchMock = vi.fn(async () => jsonResponse(422, { error: { code: 'no_face', message: 'No face.' } }))
    vi.stubGlobal('fetch', fetchMock)
    const err = await predictUrl('https://example.org/cat.jpg', { explain: true }).catch((e) => e)
    expect(err.code).toBe('no_face')
    expect(fetchMock).toHaveBeenCalledTimes(1)
  })

  it('links the model card only at a path on this app', () => {
    expect(modelCardHref({ model_card: '/api/model-card' })).toBe('/api/model-card')
    expect(modelCardHref({ model_card: null })).toBe('')
    expect(modelCardHref({})).toBe('')
    expect(modelCardHref(null)).toBe('')
    for (const bad of ['javascript:alert(1)', 'https://evil.example/card', '//evil.example/card', '/\\evil.example']) {
      expect(modelCardHref({ model_card: bad }), bad).toBe('')
    }
  })
})

describe('sendFeedback', () => {
  const STORED = { status: 'stored', receipt: 'a'.repeat(32), kept_photo: false, message: 'Saved.' }
  const photo = () => new File([new Uint8Array([9, 8, 7, 6])], 'me.jpg', { type: 'image/jpeg' })

  function stubFetch(status = 201, body = STORED) {
    const fetchMock = vi.fn(async () => jsonResponse(status, body))
    vi.stubGlobal('fetch', fetchMock)
    return fetchMock
  }
  const sentForm = (fetchMock) => fetchMock.mock.calls[0][1].body

  it('posts token, label and keep=0 as multipart, and no photo when keep is unticked', async () => {
    const fetchMock = stubFetch()
    const body = await sendFeedback({ token: 'tok.sig', label: 'fake', keep: false, file: photo(), url: 'https://example.org/a.jpg' })
    expect(body).toEqual(STORED)
    const [url, init] = fetchMock.mock.calls[0]
    expect(url).toBe('/api/feedback')
    expect(init.method).toBe('POST')
    expect(init.body).toBeInstanceOf(FormData)
    expect([...init.body.keys()].sort()).toEqual(['keep', 'label', 'token'])
    expect(init.body.get('token')).toBe('tok.sig')
    expect(init.body.get('label')).toBe('fake')
    expect(init.body.get('keep')).toBe('0')
    // FormData sets its own multipart boundary: a Content-Type header here would break it.
    expect(init.headers['Content-Type']).toBeUndefined()
  })

  it('sends the uploaded file itself as "image" when keep is ticked', async () => {
    const fetchMock = stubFetch(201, { ...STORED, kept_photo: true })
    const file = photo()
    const body = await sendFeedback({ token: 't', label: 'real', keep: true, file })
    expect(body.kept_photo).toBe(true)
    const form = sentForm(fetchMock)
    expect(form.get('keep')).toBe('1')
    expect(form.get('url')).toBeNull()
    const image = form.get('image')
    expect(image.name).toBe('me.jpg')
    expect(image.type).toBe('image/jpeg')
    expect([...new Uint8Array(await image.arrayBuffer())]).toEqual([9, 8, 7, 6])
  })

  it('sends the link as "url" (not an image) when a URL analysis is kept', async () => {
    const fetchMock = stubFetch()
    await sendFeedback({ token: 't', label: 'unsure', keep: true, url: 'https://example.org/a.jpg' })
    const form = sentForm(fetchMock)
    expect(form.get('keep')).toBe('1')
    expect(form.get('label')).toBe('unsure')
    expect(form.get('url')).toBe('https://example.org/a.jpg')
    expect(form.get('image')).toBeNull()
  })

  it('refuses keep without a photo to keep, before sending anything', () => {
    const fetchMock = stubFetch()
    expect(() => sendFeedback({ token: 't', label: 'fake', keep: true })).toThrow(TypeError)
    expect(fetchMock).not.toHaveBeenCalled()
  })

  it('fails as ApiError with the server code, status and sentence', async () => {
    stubFetch(503, { error: { code: 'storage_unavailable', message: 'Storage did not answer.' } })
    let err = await sendFeedback({ token: 't', label: 'fake' }).catch((e) => e)
    expect(err).toBeInstanceOf(ApiError)
    expect([err.code, err.status, err.message]).toEqual(['storage_unavailable', 503, 'Storage did not answer.'])

    stubFetch(409, { error: { code: 'already_received', message: 'Already received.' } })
    err = await sendFeedback({ token: 't', label: 'fake' }).catch((e) => e)
    expect([err.code, err.status]).toEqual(['already_received', 409])

    vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new TypeError('Failed to fetch'))))
    err = await sendFeedback({ token: 't', label: 'fake' }).catch((e) => e)
    expect(err.code).toBe('network')
  })
})
