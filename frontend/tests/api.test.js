import { afterEach, describe, expect, it, vi } from 'vitest'
import { ApiError, getHealth, modelCardHref, predictFile, predictUrl } from '../src/api.js'

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
