import { describe, expect, it } from 'vitest'
import { describeError, describeFeedbackError } from '../src/errors.js'
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

describe('describeFeedbackError', () => {
  it('says "could not save" with the server sentence and offers a retry when storage is down', () => {
    const words = describeFeedbackError(new ApiError('storage_unavailable', 503, 'The feedback store did not answer.'))
    expect(words.title).toBe('Could not save your answer.')
    expect(words.detail).toBe('The feedback store did not answer.')
    expect(words.retry).toBe(true)
  })

  it('says "could not save" and offers a retry when the server cannot be reached', () => {
    for (const code of ['network', 'client_timeout']) {
      const words = describeFeedbackError(new ApiError(code))
      expect(words.title).toBe('Could not save your answer.')
      expect(words.hint).toContain('connection')
      expect(words.detail).toBe('') // not the code dressed as a sentence
      expect(words.retry).toBe(true)
    }
  })

  it('tells a replay it was already received, with nothing to retry', () => {
    const words = describeFeedbackError(new ApiError('already_received', 409, 'x'))
    expect(words.title).toContain('already received')
    expect(words.retry).toBe(false)
  })

  it('offers to send without the photo when a kept link cannot be downloaded again', () => {
    const words = describeFeedbackError(new ApiError('fetch_failed', 502, 'The site answered 404.'))
    expect(words.hint).toContain('Untick the box')
    expect(words.detail).toBe('The site answered 404.')
    expect(words.retry).toBe(true)
  })

  it('asks to wait a minute when rate limited', () => {
    const words = describeFeedbackError(new ApiError('rate_limited', 429, 'Too many.'))
    expect(words.hint).toContain('wait a minute')
    expect(words.retry).toBe(true)
  })

  it.each(['model_changed', 'invalid_token'])('asks for a new check after %s, without a retry', (code) => {
    const words = describeFeedbackError(new ApiError(code, code === 'model_changed' ? 409 : 403, 'x'))
    expect(words.hint).toMatch(/check the photo again/i)
    expect(words.retry).toBe(false)
  })

  it('shows an unknown code\'s server sentence, but never a body that is not one sentence', () => {
    const teapot = describeFeedbackError(new ApiError('teapot', 418, 'I am a teapot.'))
    expect(teapot.title).toBe('Could not save your answer.')
    expect(teapot.code).toBe('unknown')
    expect(teapot.detail).toBe('I am a teapot.')
    expect(teapot.hint).not.toContain('connection') // the server did answer
    expect(describeFeedbackError(new ApiError('unknown', 502, '')).detail).toBe('')
    const html = describeFeedbackError(new ApiError('storage_unavailable', 503, '<h1>Bad</h1>'))
    expect(html.detail).toBe('')
    expect(describeFeedbackError(new TypeError('boom')).detail).toBe('')
  })
})
