// Every call the page makes to the app lives here, so the contract is in one place.
// Relative URLs: the page is always served by the same app as the API (the CSP allows only 'self').

/** A failed request, reduced to what the page needs: a stable code, the HTTP status, a message. */
export class ApiError extends Error {
  constructor(code, status = 0, message = '') {
    super(message || code)
    this.name = 'ApiError'
    this.code = code
    this.status = status
  }
}

// A cold start loads the model and dlib; after this long something is wrong, not slow.
export const REQUEST_TIMEOUT_MS = 90_000

async function request(path, init = {}, { signal, timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
  // One controller for both reasons to stop: the page moved on (signal), or the server is too slow.
  // (Built by hand rather than AbortSignal.any, which Safari gained only in 2024.)
  const controller = new AbortController()
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    controller.abort()
  }, timeoutMs)
  const forward = () => controller.abort()
  if (signal?.aborted) controller.abort()
  signal?.addEventListener('abort', forward, { once: true })
  let response
  try {
    response = await fetch(path, {
      ...init,
      signal: controller.signal,
      headers: { Accept: 'application/json', ...init.headers },
    })
  } catch (err) {
    if (signal?.aborted) throw err // the page replaced this request; the caller ignores it
    throw new ApiError(timedOut ? 'client_timeout' : 'network')
  } finally {
    clearTimeout(timer)
    signal?.removeEventListener('abort', forward)
  }
  let body = null
  try {
    body = await response.json()
  } catch {
    // A proxy error page or an empty body: treated below like any unknown answer.
  }
  if (response.ok && body && typeof body === 'object' && !body.error) return body
  const code = body?.error?.code
  const message = body?.error?.message
  throw new ApiError(typeof code === 'string' ? code : 'unknown', response.status, typeof message === 'string' ? message : '')
}

/**
 * GET /api/health: model name, version, what it was trained on, threshold, the generators it learned
 * and the rule that set its threshold (null for an older model.json), and upload limits.
 */
export function getHealth(options) {
  return request('/api/health', {}, options)
}

// Ask for the aligned crops always, and for Grad-CAM overlays only when /api/health said the model
// can make them: the server answers 501 explain_unavailable otherwise.
function predictPath(explain) {
  return explain ? '/api/predict?crops=1&explain=1' : '/api/predict?crops=1'
}

// Health may be stale (the model was swapped since the page loaded): rather than fail the check,
// ask once more without the heat maps.
async function withoutExplainOnRefusal(send, explain) {
  try {
    return await send(explain)
  } catch (err) {
    if (explain && err instanceof ApiError && err.code === 'explain_unavailable') return send(false)
    throw err
  }
}

/**
 * Ask for a verdict on a local file (multipart field `image`), with the aligned crops.
 * @param {File} file
 * @param {{signal?: AbortSignal, timeoutMs?: number, explain?: boolean}} [options] explain: also
 *   ask for each face's Grad-CAM overlay (only when health.model.explain is true)
 */
export function predictFile(file, { explain = false, ...options } = {}) {
  return withoutExplainOnRefusal((ex) => {
    const form = new FormData()
    form.append('image', file, file.name || 'image')
    return request(predictPath(ex), { method: 'POST', body: form }, options)
  }, explain)
}

/** Ask for a verdict on an image the server downloads itself from `url` (options as predictFile). */
export function predictUrl(url, { explain = false, ...options } = {}) {
  return withoutExplainOnRefusal(
    (ex) =>
      request(
        predictPath(ex),
        { method: 'POST', body: JSON.stringify({ url }), headers: { 'Content-Type': 'application/json' } },
        options,
      ),
    explain,
  )
}

/**
 * Tell the maintainers a face's verdict is right or wrong: POST /api/feedback, multipart.
 * Without `keep` only the answer goes (no pixels leave the page again); with it, the photo too:
 * the same File that was uploaded (field `image`), or the link it came from (field `url`, which
 * the server fetches again). Resolves to {status, receipt, kept_photo, message}; fails as ApiError.
 * @param {{token: string, label: 'real'|'fake'|'unsure', keep?: boolean, file?: File|null, url?: string}} feedback
 * @param {{signal?: AbortSignal, timeoutMs?: number}} [options]
 */
export function sendFeedback({ token, label, keep = false, file = null, url = '' }, options) {
  // Asking to keep a photo without one is the caller's bug; the server would only answer 400.
  if (keep && !file && !url) throw new TypeError('sendFeedback: keep needs the file or the url')
  const form = new FormData()
  form.append('token', token)
  form.append('label', label)
  form.append('keep', keep ? '1' : '0')
  if (keep && file) form.append('image', file, file.name || 'image')
  else if (keep) form.append('url', url)
  return request('/api/feedback', { method: 'POST', body: form }, options)
}

/** Where the model card is, when the served model ships one: a same-origin path, else ''. */
export function modelCardHref(model) {
  const href = model?.model_card
  // Only a path on this app: never a javascript: or another site's address from a bad answer.
  return typeof href === 'string' && /^\/(?![/\\])/.test(href) ? href : ''
}
