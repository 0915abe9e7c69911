import { describe, expect, it } from 'vitest'
import { describeError } from '../src/errors.js'
import { ApiError } from '../src/api.js'

const CODES = [
  'bad_request',
  'url_not_allowed',
  'too_large',
  'not_an_image',
  'no_face',
  'fetch_failed',
  'fetch_timeout',
  'busy',
  'model_unavailable',
]

describe('describeError', () => {
  it.each(CODES)('gives %s its own plain title and hint', (code) => {
    const words = describeError(new ApiError(code, 400, 'x'))
    expect(words.code).toBe(code)
    expect(words.title).toMatch(/^[A-Z].*\.$/)
    expect(words.hint.length).toBeGreaterThan(10)
    expect(words.title + words.hint).not.toMatch(/[{}]|_/)
  })

  it('gives every code a different title', () => {
    const titles = CODES.map((c) => describeError(new ApiError(c)).title)
    expect(new Set(titles).size).toBe(CODES.length)
  })

  it('says the no-face hint: frontal face, good light', () => {
    const { title, hint } = describeError(new ApiError('no_face', 422))
    expect(title).toBe('No face was found in this image.')
    expect(hint).toMatch(/frontal/)
    expect(hint).toMatch(/good light/)
  })

  it('names the size limit in MB from /api/health', () => {
    const { title } = describeError(new ApiError('too_large', 413), { max_bytes: 10 * 2 ** 20 })
    expect(title).toBe('This image is too large (limit 10 MB).')
    const both = describeError(new ApiError('too_large'), { max_bytes: 2.5 * 2 ** 20, max_pixels: 40_000_000 })
    expect(both.title).toBe('This image is too large (limit 2.5 MB, 40 megapixels).')
    expect(describeError(new ApiError('too_large')).title).toBe('This image is too large.')
  })

  it.each(['network', 'unknown', 'internal_error', undefined])('treats %s as the server being unreachable', (code) => {
    const words = describeError(code === undefined ? new TypeError('Failed to fetch') : new ApiError(code, 500))
    expect(words.code).toBe('unreachable')
    expect(words.title).toBe('Could not reach the server.')
  })

  it('keeps the server sentence only for link problems, and only when it is plain', () => {
    const refused = describeError(new ApiError('url_not_allowed', 400, 'Addresses on a private network are refused.'))
    expect(refused.detail).toBe('Addresses on a private network are refused.')
    expect(describeError(new ApiError('no_face', 422, 'No face in a.jpg.')).detail).toBe('')
    for (const raw of ['{"error": 1}', 'Traceback (most recent call last):', 'line one\nline two', '<html>', 'x'.repeat(300)]) {
      expect(describeError(new ApiError('bad_request', 400, raw)).detail).toBe('')
    }
  })
})
