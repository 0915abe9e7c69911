import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import App from '../src/App.vue'

const HEALTH = {
  status: 'ok',
  model: { name: 'vgg10-gray', version: '3', trained_on: '140k Real and Fake Faces (small)', threshold: 0.5 },
  limits: { max_bytes: 5 * 2 ** 20, max_pixels: 40_000_000 },
}

const TWO_FACES = {
  verdict: 'fake',
  p_fake: 0.91,
  threshold: 0.5,
  faces: [
    { box: { x: 100, y: 50, w: 200, h: 200 }, p_fake: 0.91, label: 'fake', crop: 'data:image/png;base64,AAAA' },
    { box: { x: 500, y: 80, w: 100, h: 100 }, p_fake: 0.12, label: 'real', crop: 'data:image/png;base64,BBBB' },
  ],
  image: { width: 800, height: 400 },
  model: { name: 'vgg10-gray', version: '3' },
  timings_ms: { decode: 3, detect: 40, align: 2, predict: 5, total: 52.4 },
}

function json(status, body) {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
}

// A fetch that answers /api/health at once and hands each /api/predict call to the test to settle.
function fakeServer() {
  const pending = []
  const fetchMock = vi.fn((url, init) => {
    if (url === '/api/health') return Promise.resolve(json(200, HEALTH))
    return new Promise((resolve, reject) => {
      init.signal?.addEventListener('abort', () => reject(init.signal.reason))
      pending.push({ url, init, resolve })
    })
  })
  return { fetchMock, pending }
}

function pickFile(wrapper, file) {
  const input = wrapper.find('input[type="file"]')
  Object.defineProperty(input.element, 'files', { value: [file], configurable: true })
  return input.trigger('change')
}

const photo = (size = 1000, name = 'photo.jpg') => new File([new Uint8Array(size)], name, { type: 'image/jpeg' })

let server
beforeEach(() => {
  server = fakeServer()
  vi.stubGlobal('fetch', server.fetchMock)
  vi.stubGlobal('URL', Object.assign(URL, { createObjectURL: vi.fn(() => 'blob:preview'), revokeObjectURL: vi.fn() }))
})
afterEach(() => vi.unstubAllGlobals())

describe('App', () => {
  it('shows the model line from /api/health', async () => {
    const app = mount(App)
    await flushPromises()
    const note = app.find('.model-note').text()
    expect(note).toContain('vgg10-gray')
    expect(note).toContain('version 3')
    expect(note).toContain('140k Real and Fake Faces')
    expect(note).toContain('can be wrong')
    expect(app.find('.limits').text()).toContain('5 MB')
    // This HEALTH predates generators and operating_point: no lines for them.
    expect(app.find('.model-scope').exists()).toBe(false)
  })

  it('asks about GANs and diffusion models alike', async () => {
    const app = mount(App)
    await flushPromises()
    expect(app.find('.tagline').text()).toContain('made by an AI (a GAN or a diffusion model)?')
    expect(app.find('.intro').text()).toContain('probability of being generated (by a GAN or a diffusion model)')
  })

  it('previews at once, shows work under way, then one card per face with boxes', async () => {
    const app = mount(App)
    await flushPromises()
    await pickFile(app, photo())
    expect(app.find('.photo-img').attributes('src')).toBe('blob:preview')
    expect(app.find('.loading').exists()).toBe(true)
    expect(app.find('.result').attributes('aria-busy')).toBe('true')
    expect(app.find('[role="status"]').text()).toBe('Checking the photo…')

    server.pending[0].resolve(json(200, TWO_FACES))
    await flushPromises()
    expect(app.find('.loading').exists()).toBe(false)
    expect(app.find('.result-heading').text()).toBe('Likely fake')
    const cards = app.findAll('.face-card')
    expect(cards).toHaveLength(2)
    expect(cards[0].text()).toContain('Likely fake')
    expect(cards[1].text()).toContain('Likely real')
    expect(app.findAll('.face-crop')[1].attributes('src')).toBe('data:image/png;base64,BBBB')
    const boxes = app.findAll('.face-box')
    expect(boxes).toHaveLength(2)
    expect(boxes[0].element.style.left).toBe('12.500%')
    expect(boxes[0].element.style.top).toBe('12.500%')
    expect(boxes[0].element.style.width).toBe('25.000%')
    expect(boxes[0].element.style.height).toBe('50.000%')
    expect(app.find('.summary').text()).toContain('2 faces found; 1 likely fake.')
    expect(app.find('.summary').text()).toContain('Answered in 52 ms.')
    expect(app.find('[role="status"]').text()).toContain('Likely fake.')
  })

  it('highlights the box of the card under the pointer or focus', async () => {
    const app = mount(App)
    await flushPromises()
    await pickFile(app, photo())
    server.pending[0].resolve(json(200, TWO_FACES))
    await flushPromises()
    const cards = app.findAll('.face-card')
    await cards[1].trigger('mouseenter')
    let boxes = app.findAll('.face-box')
    expect(boxes[1].classes()).toContain('is-active')
    expect(boxes[0].classes()).not.toContain('is-active')
    await cards[1].trigger('mouseleave')
    expect(app.findAll('.face-box.is-active')).toHaveLength(0)
    await cards[0].trigger('focus')
    boxes = app.findAll('.face-box')
    expect(boxes[0].classes()).toContain('is-active')
    expect(cards[0].classes()).toContain('is-active')
  })

  it('maps an error code to plain words, never the raw body', async () => {
    const app = mount(App)
    await flushPromises()
    await pickFile(app, photo(10, 'cat.jpg'))
    server.pending[0].resolve(json(422, { error: { code: 'no_face', message: 'No face found in cat.jpg' } }))
    await flushPromises()
    const notice = app.find('.notice')
    expect(notice.attributes('data-code')).toBe('no_face')
    expect(notice.text()).toContain('No face was found in this image.')
    expect(notice.text()).toContain('frontal face')
    expect(app.text()).not.toContain('{')
    expect(app.find('[role="status"]').text()).toContain('No face was found')
  })

  it('refuses a file over the limit before uploading it', async () => {
    const app = mount(App)
    await flushPromises()
    await pickFile(app, photo(HEALTH.limits.max_bytes + 1, 'huge.jpg'))
    await flushPromises()
    expect(server.pending).toHaveLength(0)
    expect(app.find('.notice').text()).toContain('This image is too large (limit 5 MB, 40 megapixels).')
  })

  it('checks a link and lets a new photo replace one still in flight', async () => {
    const app = mount(App)
    await flushPromises()
    await app.find('#url-input').setValue('https://example.org/face.jpg')
    await app.find('form').trigger('submit')
    expect(server.pending).toHaveLength(1)
    expect(JSON.parse(server.pending[0].init.body)).toEqual({ url: 'https://example.org/face.jpg' })
    expect(app.find('.photo').exists()).toBe(false) // no preview of a link under the CSP

    await pickFile(app, photo())
    expect(server.pending[0].init.signal.aborted).toBe(true)
    server.pending[1].resolve(json(200, { ...TWO_FACES, verdict: 'real', faces: [TWO_FACES.faces[1]] }))
    await flushPromises()
    expect(app.find('.result-heading').text()).toBe('Likely real')
    expect(app.findAll('.face-card')).toHaveLength(1)
    expect(app.find('.notice').exists()).toBe(false)
  })

  it('says the server cannot be reached when the network fails', async () => {
    server.fetchMock.mockImplementation((url) =>
      url === '/api/health' ? Promise.resolve(json(200, HEALTH)) : Promise.reject(new TypeError('Failed to fetch')),
    )
    const app = mount(App)
    await flushPromises()
    await pickFile(app, photo())
    await flushPromises()
    expect(app.find('.notice').text()).toContain('Could not reach the server.')
  })

  it('uses the preview the server sends for a link', async () => {
    const app = mount(App)
    await flushPromises()
    await app.find('#url-input').setValue('https://example.org/face.jpg')
    await app.find('form').trigger('submit')
    const image = { ...TWO_FACES.image, preview: 'data:image/jpeg;base64,CCCC' }
    server.pending[0].resolve(json(200, { ...TWO_FACES, image }))
    await flushPromises()
    expect(app.find('.photo-img').attributes('src')).toBe('data:image/jpeg;base64,CCCC')
    expect(app.findAll('.face-box')).toHaveLength(2)
  })
})

describe('App when the model is down', () => {
  it('says so in the model line instead of the model details', async () => {
    server.fetchMock.mockImplementation(() =>
      Promise.resolve(json(503, { status: 'unavailable', error: { code: 'model_unavailable', message: 'x' } })),
    )
    const app = mount(App)
    await flushPromises()
    const note = app.find('.model-note').text()
    expect(note).toContain('The model is not available right now.')
    expect(note).toContain('can be wrong')
  })
})

describe('App with a model that can explain', () => {
  const EXPLAIN_HEALTH = { ...HEALTH, model: { ...HEALTH.model, explain: true, model_card: '/api/model-card' } }
  const overlay = (i) => `data:image/png;base64,HEAT${i}`
  const EXPLAINED = {
    ...TWO_FACES,
    faces: TWO_FACES.faces.map((f, i) => ({
      ...f,
      explanation: { method: 'grad-cam', explains: f.label, overlay: overlay(i) },
    })),
  }

  function serverWith(health) {
    server.fetchMock.mockImplementation((url, init) => {
      if (url === '/api/health') return Promise.resolve(json(200, health))
      return new Promise((resolve) => server.pending.push({ url, init, resolve }))
    })
  }

  it('asks for heat maps, shows a switch per face and swaps that face only', async () => {
    serverWith(EXPLAIN_HEALTH)
    const app = mount(App)
    await flushPromises()
    expect(app.find('a.model-card-link').attributes('href')).toBe('/api/model-card')
    await pickFile(app, photo())
    expect(server.pending[0].url).toBe('/api/predict?crops=1&explain=1')
    server.pending[0].resolve(json(200, EXPLAINED))
    await flushPromises()
    const toggles = app.findAll('.face-card input[type="checkbox"]')
    expect(toggles).toHaveLength(2)
    await toggles[1].setValue(true)
    const crops = app.findAll('.face-crop')
    expect(crops[0].attributes('src')).toBe(TWO_FACES.faces[0].crop)
    expect(crops[1].attributes('src')).toBe(overlay(1))
    expect(app.findAll('.heatmap-note')[1].text()).toContain('“real”')

    // A link is checked with heat maps too, and the new answer starts from the crops again.
    await app.find('#url-input').setValue('https://example.org/face.jpg')
    await app.find('form').trigger('submit')
    expect(server.pending[1].url).toBe('/api/predict?crops=1&explain=1')
    server.pending[1].resolve(json(200, EXPLAINED))
    await flushPromises()
    expect(app.findAll('.face-crop')[1].attributes('src')).toBe(TWO_FACES.faces[1].crop)
  })

  it('does not ask for heat maps nor link a card when health says there are none', async () => {
    serverWith({ ...HEALTH, model: { ...HEALTH.model, explain: false, model_card: null } })
    const app = mount(App)
    await flushPromises()
    expect(app.find('a.model-card-link').exists()).toBe(false)
    await pickFile(app, photo())
    expect(server.pending[0].url).toBe('/api/predict?crops=1')
    server.pending[0].resolve(json(200, TWO_FACES))
    await flushPromises()
    expect(app.findAll('.face-card')).toHaveLength(2)
    expect(app.find('.face-card input[type="checkbox"]').exists()).toBe(false)
  })
})

describe('App collecting feedback', () => {
  const FEEDBACK_HEALTH = { ...HEALTH, feedback: { enabled: true, retention_days: 90 } }
  const tokened = (tag) => ({
    ...TWO_FACES,
    faces: TWO_FACES.faces.map((f, i) => ({ ...f, feedback_token: `${tag}-${i}.sig` })),
  })
  const STORED = { status: 'stored', receipt: 'f'.repeat(32), kept_photo: true, message: 'Saved.' }

  function serverWith(health) {
    server.fetchMock.mockImplementation((url, init) => {
      if (url === '/api/health') return Promise.resolve(json(200, health))
      return new Promise((resolve) => server.pending.push({ url, init, resolve }))
    })
  }
  const feedbackPosts = () => server.pending.filter((p) => p.url === '/api/feedback')
  const answer = (card, name) => card.findAll('button').find((b) => b.text() === name)

  it('asks under each face, and a kept answer sends the very file that was checked', async () => {
    serverWith(FEEDBACK_HEALTH)
    const app = mount(App)
    await flushPromises()
    const file = photo(1234, 'mine.jpg')
    await pickFile(app, file)
    server.pending[0].resolve(json(200, tokened('a')))
    await flushPromises()
    const cards = app.findAll('.face-card')
    expect(cards.map((c) => c.find('fieldset.feedback legend').text())).toEqual(['Is this right?', 'Is this right?'])
    expect(cards[1].find('.feedback-note').text()).toContain('for up to 90 days')

    await cards[1].find('.feedback input[type="checkbox"]').setValue(true)
    await answer(cards[1], 'Generated').trigger('click')
    const [post] = feedbackPosts()
    expect(post.init.body.get('token')).toBe('a-1.sig')
    expect(post.init.body.get('label')).toBe('fake')
    expect(post.init.body.get('keep')).toBe('1')
    const image = post.init.body.get('image')
    expect([image.name, image.size]).toEqual(['mine.jpg', 1234])
    post.resolve(json(201, STORED))
    await flushPromises()
    expect(cards[1].find('[role="status"]').text()).toContain('Thank you')
    // Only that face's question is answered.
    expect(cards[0].find('[role="status"]').text()).toBe('')
    expect(cards[0].find('fieldset').element.hasAttribute('disabled')).toBe(false)
  })

  it('sends the link for a URL analysis, never a file', async () => {
    serverWith(FEEDBACK_HEALTH)
    const app = mount(App)
    await flushPromises()
    await app.find('#url-input').setValue('https://example.org/face.jpg')
    await app.find('form').trigger('submit')
    server.pending[0].resolve(json(200, tokened('u')))
    await flushPromises()
    const card = app.findAll('.face-card')[0]
    expect(card.find('.feedback-note').text()).toContain('the image at your link')
    await card.find('.feedback input[type="checkbox"]').setValue(true)
    await answer(card, 'Real photo').trigger('click')
    const body = feedbackPosts()[0].init.body
    expect(body.get('url')).toBe('https://example.org/face.jpg')
    expect(body.get('image')).toBeNull()
  })

  it('hides the question when health says feedback is off, tokens or not', async () => {
    serverWith({ ...HEALTH, feedback: { enabled: false, retention_days: 90 } })
    const app = mount(App)
    await flushPromises()
    await pickFile(app, photo())
    server.pending[0].resolve(json(200, tokened('a')))
    await flushPromises()
    expect(app.findAll('.face-card')).toHaveLength(2)
    expect(app.find('fieldset.feedback').exists()).toBe(false)
  })

  it('hides the question when health says nothing about feedback (an older server)', async () => {
    serverWith(HEALTH)
    const app = mount(App)
    await flushPromises()
    await pickFile(app, photo())
    server.pending[0].resolve(json(200, tokened('a')))
    await flushPromises()
    expect(app.find('fieldset.feedback').exists()).toBe(false)
  })

  it('starts a fresh question for a new photo', async () => {
    serverWith(FEEDBACK_HEALTH)
    const app = mount(App)
    await flushPromises()
    await pickFile(app, photo())
    server.pending[0].resolve(json(200, tokened('a')))
    await flushPromises()
    let card = app.findAll('.face-card')[0]
    await answer(card, 'Not sure').trigger('click')
    feedbackPosts()[0].resolve(json(201, { ...STORED, kept_photo: false }))
    await flushPromises()
    expect(card.find('[role="status"]').text()).toContain('Thank you')

    await pickFile(app, photo(10, 'next.jpg'))
    server.pending.at(-1).resolve(json(200, tokened('b')))
    await flushPromises()
    card = app.findAll('.face-card')[0]
    expect(card.find('[role="status"]').text()).toBe('')
    expect(card.find('fieldset').element.hasAttribute('disabled')).toBe(false)
    expect(card.find('.feedback input[type="checkbox"]').element.checked).toBe(false)
    await answer(card, 'Generated').trigger('click')
    expect(feedbackPosts().at(-1).init.body.get('token')).toBe('b-0.sig')
  })
})

describe('App with a two-view model', () => {
  const TWO_VIEW_HEALTH = {
    ...HEALTH,
    model: {
      ...HEALTH.model,
      views: [
        { name: 'cnn', title: 'Face network', detail: 'EfficientNet-Lite0 trained on aligned faces' },
        { name: 'clip', title: 'CLIP', detail: 'OpenAI CLIP ViT-B/16 image features, frozen, with a fitted head' },
      ],
      fusion: 'The two are averaged.',
    },
  }
  const TWO_VIEW_FACES = {
    ...TWO_FACES,
    faces: [
      { ...TWO_FACES.faces[0], views: { clip: 0.97, cnn: 0.42 }, views_disagree: true },
      { ...TWO_FACES.faces[1], views: { clip: 0.08, cnn: 0.2 }, views_disagree: false },
    ],
  }

  it('titles each card’s views from health and says so in the model note', async () => {
    server.fetchMock.mockImplementation((url, init) => {
      if (url === '/api/health') return Promise.resolve(json(200, TWO_VIEW_HEALTH))
      return new Promise((resolve) => server.pending.push({ url, init, resolve }))
    })
    const app = mount(App)
    await flushPromises()
    expect(app.find('.model-views').text()).toContain('It looks at every face two ways: Face network (')
    await pickFile(app, photo())
    server.pending[0].resolve(json(200, TWO_VIEW_FACES))
    await flushPromises()
    const cards = app.findAll('.face-card')
    expect(cards[0].findAll('.view-score').map((li) => li.text())).toEqual(['Face network: 42%', 'CLIP: 97%'])
    expect(cards[0].find('.views-disagree').exists()).toBe(true)
    expect(cards[1].findAll('.view-score').map((li) => li.text())).toEqual(['Face network: 20%', 'CLIP: 8%'])
    expect(cards[1].find('.views-disagree').exists()).toBe(false)
  })
})
