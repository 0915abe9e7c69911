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

// Feedback has its own words: the photo was checked already, so what matters is whether the
// answer was saved and whether sending it again can help (`retry`).
const NOT_SAVED = 'Could not save your answer.'

const FEEDBACK_WORDS = {
  storage_unavailable: () => ({
    title: NOT_SAVED,
    hint: 'Nothing was kept, and your answer is still here to send again.',
    retry: true,
    detail: true,
  }),
  feedback_unavailable: () => ({
    title: NOT_SAVED,
    hint: 'Answers are not being collected right now. Please try again later.',
    retry: true,
    detail: true,
  }),
  rate_limited: () => ({
    title: 'Too many answers from here in the last minute.',
    hint: 'Please wait a minute, then try again.',
    retry: true,
  }),
  already_received: () => ({
    title: 'Your answer for this face was already received.',
    hint: 'Thank you: there is nothing more to do.',
    retry: false,
  }),
  model_changed: () => ({
    title: 'The model was updated since this photo was checked.',
    hint: 'Check the photo again to answer about the new verdict.',
    retry: false,
  }),
  invalid_token: () => ({
    title: 'This answer can no longer be matched to the check.',
    hint: 'Answers are taken for a limited time after a check: check the photo again to answer.',
    retry: false,
  }),
  photo_mismatch: () => ({
    title: 'The photo sent is not the one that was checked.',
    hint: 'For a link, the image there may have changed. Untick the box to send your answer without the photo.',
    retry: true,
    detail: true,
  }),
  too_large: () => ({
    title: 'The photo is too large to keep.',
    hint: 'Untick the box to send your answer without the photo.',
    retry: true,
  }),
  // Keeping a linked photo means the server downloads it again; that can fail on its own.
  fetch_failed: () => ({
    title: 'The image at your link could not be downloaded again to keep it.',
    hint: 'Untick the box to send your answer without the photo.',
    retry: true,
    detail: true,
  }),
  fetch_timeout: () => ({
    title: 'The site with your image took too long to answer, so it could not be kept.',
    hint: 'Untick the box to send your answer without the photo, or try again.',
    retry: true,
  }),
  bad_request: () => ({
    title: NOT_SAVED,
    hint: 'Please try again.',
    retry: true,
    detail: true,
  }),
}

const FEEDBACK_UNREACHABLE = () => ({
  title: NOT_SAVED,
  hint: 'Could not reach the server. Check your connection and try again.',
  retry: true,
})

/**
 * Why a feedback answer was not saved, in words, and whether trying again can help.
 * @param {{code?: string, message?: string}} error an ApiError (or anything thrown)
 * @returns {{code: string, title: string, hint: string, detail: string, retry: boolean}}
 */
export function describeFeedbackError(error) {
  const known = typeof error?.code === 'string' && FEEDBACK_WORDS[error.code]
  // A code the page does not know, from a server that did answer: its sentence says more than we can.
  const answered = !known && error?.status > 0
  const code = known ? error.code : answered ? 'unknown' : 'unreachable'
  const { detail: showDetail, ...words } = (known || (answered ? FEEDBACK_WORDS.bad_request : FEEDBACK_UNREACHABLE))()
  // An ApiError without a server sentence carries its code as its message: that is not a sentence.
  const sentence = error?.message !== error?.code ? plainSentence(error?.message) : ''
  const detail = showDetail ? sentence : ''
  return { code, ...words, detail: detail && detail !== words.title ? detail : '' }
}
