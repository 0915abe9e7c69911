// Turns an API failure into plain words: a title, a hint on what to do, and sometimes a detail.
// Nothing from the server is shown raw except its one-sentence message, and only for codes where
// that sentence says something our own words cannot (why a link was refused, say).
import { megabytes, megapixels } from './format.js'

const DETAIL_CODES = new Set(['bad_request', 'url_not_allowed', 'fetch_failed'])

function tooLarge(limits) {
  const parts = []
  if (limits?.max_bytes > 0) parts.push(megabytes(limits.max_bytes))
  if (limits?.max_pixels > 0) parts.push(megapixels(limits.max_pixels))
  const limit = parts.length ? ` (limit ${parts.join(', ')})` : ''
  return {
    title: `This image is too large${limit}.`,
    hint: 'Try a smaller copy of the photo: a face needs only a few hundred pixels.',
  }
}

const WORDS = {
  bad_request: () => ({
    title: 'The server could not use that request.',
    hint: 'Choose an image file, or enter a link that starts with http:// or https://.',
  }),
  url_not_allowed: () => ({
    title: 'That link cannot be used.',
    hint: 'Only public web addresses (http or https) are allowed. Or download the image and upload the file.',
  }),
  too_large: tooLarge,
  not_an_image: () => ({
    title: 'This file is not an image the server can read.',
    hint: 'Use a JPEG, PNG or WebP photo.',
  }),
  no_face: () => ({
    title: 'No face was found in this image.',
    hint: 'Use a photo with a clear, frontal face in good light, not too small or cut off.',
  }),
  fetch_failed: () => ({
    title: 'The image at that link could not be downloaded.',
    hint: 'Check the link opens an image (not a web page) in your browser, or upload the file instead.',
  }),
  fetch_timeout: () => ({
    title: 'The site with that image took too long to answer.',
    hint: 'Try again, or download the image and upload the file instead.',
  }),
  busy: () => ({
    title: 'The server is busy right now.',
    hint: 'Please try again in a few seconds.',
  }),
  model_unavailable: () => ({
    title: 'The model is not available right now.',
    hint: 'The server could not load it. Please try again later.',
  }),
  client_timeout: () => ({
    title: 'The server took too long to answer.',
    hint: 'It may be starting up. Please try again.',
  }),
}

const UNREACHABLE = () => ({
  title: 'Could not reach the server.',
  hint: 'Check your connection and try again in a moment.',
})

// Only a short, single-line sentence is safe to show as-is; anything else (JSON, a traceback,
// an HTML error page) is dropped rather than pasted into the page.
function plainSentence(text) {
  if (typeof text !== 'string') return ''
  const t = text.trim()
  if (!t || t.length > 240 || /[\n{}<>]|Traceback/.test(t)) return ''
  return t
}

/**
 * @param {{code?: string, message?: string}} error an ApiError (or anything thrown)
 * @param {{max_bytes?: number, max_pixels?: number}} [limits] from /api/health, for "too large"
 * @returns {{code: string, title: string, hint: string, detail: string}}
 */
export function describeError(error, limits) {
  const code = typeof error?.code === 'string' && WORDS[error.code] ? error.code : 'unreachable'
  const words = (WORDS[code] ?? UNREACHABLE)(limits)
  const detail = DETAIL_CODES.has(code) ? plainSentence(error.message) : ''
  return { code, ...words, detail: detail && detail !== words.title ? detail : '' }
}
