import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import FeedbackForm from '../src/components/FeedbackForm.vue'

const TOKEN = 'eyJ2IjoxfQ.c2ln'
const RECEIPT = '0123456789abcdef0123456789abcdef'
const KEEP_LABEL = 'Let the maintainers keep this photo to improve the model'

function json(status, body) {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
}
const stored = (kept = false) => json(201, { status: 'stored', receipt: RECEIPT, kept_photo: kept, message: 'Saved.' })
const failure = (status, code, message) => json(status, { error: { code, message } })

// Each POST waits for the test to answer it, so the "sending" state can be seen.
let pending
beforeEach(() => {
  pending = []
  vi.stubGlobal(
    'fetch',
    vi.fn(
      (url, init) =>
        new Promise((resolve, reject) => {
          init.signal?.addEventListener('abort', () => reject(init.signal.reason))
          pending.push({ url, init, resolve, reject })
        }),
    ),
  )
})
afterEach(() => {
  vi.unstubAllGlobals()
  document.body.innerHTML = ''
})

const photo = () => new File([new Uint8Array([1, 2, 3])], 'face.jpg', { type: 'image/jpeg' })
const form = (props = {}) =>
  mount(FeedbackForm, { props: { token: TOKEN, file: photo(), retentionDays: 365, ...props }, attachTo: document.body })
const button = (w, name) => w.findAll('button').find((b) => b.text() === name)
const status = (w) => w.find('[role="status"]')
const locked = (w) => w.find('fieldset').element.hasAttribute('disabled')
const sent = (i = 0) => pending[i].init.body

describe('FeedbackForm', () => {
  it('asks "Is this right?" with three answers and an unticked box that says it keeps the photo', () => {
    const w = form()
    const fieldset = w.find('fieldset')
    // A fieldset's first legend names the group: "Is this right?" for a screen reader.
    expect(fieldset.element.firstElementChild.tagName).toBe('LEGEND')
    expect(fieldset.find('legend').text()).toBe('Is this right?')
    expect(w.findAll('.feedback-answer').map((b) => b.text())).toEqual(['Real photo', 'Generated', 'Not sure'])
    expect(w.findAll('.feedback-answer').every((b) => b.attributes('type') === 'button')).toBe(true)
    const box = w.find('input[type="checkbox"]')
    expect(box.element.checked).toBe(false)
    expect(box.element.closest('label').textContent.trim()).toBe(KEEP_LABEL)
    const note = w.find(`#${box.attributes('aria-describedby')}`)
    expect(note.text()).toContain('the original photo is kept for up to 365 days')
    expect(note.text()).toContain('no pixels are kept')
    // The live region is there before anything is said, so what it later says is announced.
    expect(status(w).exists()).toBe(true)
    expect(status(w).text()).toBe('')
    expect(locked(w)).toBe(false)
    expect(pending).toHaveLength(0)
  })

  it('sends one click without the photo, then thanks, locks the answers and shows the receipt', async () => {
    const w = form()
    await button(w, 'Generated').trigger('click')
    expect(pending).toHaveLength(1)
    expect(pending[0].url).toBe('/api/feedback')
    expect(sent().get('token')).toBe(TOKEN)
    expect(sent().get('label')).toBe('fake')
    expect(sent().get('keep')).toBe('0')
    expect(sent().get('image')).toBeNull()
    expect(sent().get('url')).toBeNull()
    expect(status(w).text()).toContain('Sending your answer')
    expect(locked(w)).toBe(true)

    pending[0].resolve(stored(false))
    await flushPromises()
    const text = status(w).text()
    expect(text).toContain('Thank you: your answer “Generated” was saved.')
    expect(text).toContain('No photo was kept')
    expect(w.find('.feedback-receipt').text()).toBe(RECEIPT)
    expect(text).toContain('To have your answer deleted, quote this receipt to the maintainers')
    expect(locked(w)).toBe(true)
    expect(button(w, 'Generated').attributes('aria-pressed')).toBe('true')
    expect(button(w, 'Real photo').attributes('aria-pressed')).toBe('false')
    expect(w.find('.feedback-retry').exists()).toBe(false)

    // Locked means locked: another click sends nothing.
    await button(w, 'Real photo').trigger('click')
    expect(pending).toHaveLength(1)
  })

  it('sends the uploaded file itself when the box is ticked, and says it was kept', async () => {
    const file = photo()
    const w = form({ file })
    await w.find('input[type="checkbox"]').setValue(true)
    await button(w, 'Real photo').trigger('click')
    expect(sent().get('label')).toBe('real')
    expect(sent().get('keep')).toBe('1')
    const image = sent().get('image')
    expect(image.name).toBe('face.jpg')
    expect(image.size).toBe(file.size)
    pending[0].resolve(stored(true))
    await flushPromises()
    expect(status(w).text()).toContain('The photo was kept too, for up to 365 days')
    expect(status(w).text()).toContain('To have your answer and the photo deleted')
  })

  it('trusts the server on whether the photo was kept', async () => {
    const w = form()
    await w.find('input[type="checkbox"]').setValue(true)
    await button(w, 'Generated').trigger('click')
    pending[0].resolve(stored(false))
    await flushPromises()
    expect(status(w).text()).toContain('No photo was kept')
  })

  it('sends the link, not a file, for a URL analysis that may be kept', async () => {
    const w = form({ file: null, url: 'https://example.org/face.jpg' })
    expect(w.find('.feedback-note').text()).toContain('the image at your link is kept')
    await w.find('input[type="checkbox"]').setValue(true)
    await button(w, 'Not sure').trigger('click')
    expect(sent().get('label')).toBe('unsure')
    expect(sent().get('keep')).toBe('1')
    expect(sent().get('url')).toBe('https://example.org/face.jpg')
    expect(sent().get('image')).toBeNull()
  })

  it('offers no box when there is no photo to keep, and still sends the answer', async () => {
    const w = form({ file: null, url: '' })
    expect(w.find('input[type="checkbox"]').exists()).toBe(false)
    await button(w, 'Generated').trigger('click')
    expect(sent().get('keep')).toBe('0')
  })

  it('says it could not save when storage is down, with the server sentence, and tries again', async () => {
    const w = form()
    await button(w, 'Generated').trigger('click')
    pending[0].resolve(failure(503, 'storage_unavailable', 'The feedback store did not answer.'))
    await flushPromises()
    const text = status(w).text()
    expect(text).toContain('Could not save your answer.')
    expect(text).toContain('The feedback store did not answer.')
    expect(w.find('.feedback-problem').attributes('data-code')).toBe('storage_unavailable')
    expect(status(w).attributes('data-tone')).toBe('problem')
    expect(text).not.toContain('Thank you')
    // The answers come back, and "Try again" resends the same one.
    expect(locked(w)).toBe(false)
    await w.find('.feedback-retry').trigger('click')
    expect(pending).toHaveLength(2)
    expect(sent(1).get('label')).toBe('fake')
    expect(sent(1).get('token')).toBe(TOKEN)
    pending[1].resolve(stored(false))
    await flushPromises()
    expect(status(w).text()).toContain('Thank you')
    expect(w.find('.feedback-retry').exists()).toBe(false)
  })

  it('says it could not save when the network fails, and lets the person pick again', async () => {
    const w = form()
    await button(w, 'Real photo').trigger('click')
    pending[0].reject(new TypeError('Failed to fetch'))
    await flushPromises()
    expect(status(w).text()).toContain('Could not save your answer.')
    expect(status(w).text()).toContain('connection')
    expect(w.find('.feedback-retry').exists()).toBe(true)
    await button(w, 'Not sure').trigger('click')
    expect(sent(1).get('label')).toBe('unsure')
  })

  it('says an answer was already received, and stays locked', async () => {
    const w = form()
    await button(w, 'Generated').trigger('click')
    pending[0].resolve(failure(409, 'already_received', 'This answer was already received.'))
    await flushPromises()
    expect(status(w).text()).toContain('Your answer for this face was already received.')
    expect(status(w).text()).not.toContain('Could not save')
    expect(status(w).attributes('data-tone')).toBe('ok')
    expect(locked(w)).toBe(true)
    expect(w.find('.feedback-retry').exists()).toBe(false)
  })

  it('asks to wait a minute when rate limited, and allows another try', async () => {
    const w = form()
    await button(w, 'Generated').trigger('click')
    pending[0].resolve(failure(429, 'rate_limited', 'Too many answers.'))
    await flushPromises()
    expect(status(w).text()).toContain('wait a minute')
    expect(w.find('.feedback-retry').exists()).toBe(true)
  })

  it('asks for a new check when the model changed since, without a retry', async () => {
    const w = form()
    await button(w, 'Generated').trigger('click')
    pending[0].resolve(failure(409, 'model_changed', 'The model changed.'))
    await flushPromises()
    expect(status(w).text()).toMatch(/check the photo again/i)
    expect(locked(w)).toBe(true)
    expect(w.find('.feedback-retry').exists()).toBe(false)
  })

  it('moves focus from the disabled answer to what happened', async () => {
    const w = form()
    const answer = button(w, 'Generated')
    answer.element.focus()
    await answer.trigger('click')
    pending[0].resolve(stored(false))
    await flushPromises()
    expect(document.activeElement).toBe(status(w).element)
  })

  it('drops an answer still in flight when the form goes away (a new photo)', async () => {
    const w = form()
    await button(w, 'Generated').trigger('click')
    const { signal } = pending[0].init
    w.unmount()
    expect(signal.aborted).toBe(true)
  })
})
