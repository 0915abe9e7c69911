import { describe, expect, it } from 'vitest'
import { mount } from '@vue/test-utils'
import FaceCard from '../src/components/FaceCard.vue'

const CROP = 'data:image/png;base64,CROP'
const OVERLAY = 'data:image/png;base64,OVERLAY'

const face = (extra = {}) => ({
  box: { x: 1, y: 2, w: 3, h: 4 },
  p_fake: 0.91,
  label: 'fake',
  crop: CROP,
  explanation: { method: 'grad-cam', explains: 'fake', overlay: OVERLAY },
  ...extra,
})

const card = (f = face(), index = 0) => mount(FaceCard, { props: { face: f, index, threshold: 0.5 } })

describe('FaceCard heat map', () => {
  it('shows the crop first, with the switch off and labelled', () => {
    const c = card()
    const img = c.find('img.face-crop')
    expect(img.attributes('src')).toBe(CROP)
    expect(img.attributes('alt')).toBe('Face 1, aligned as the model saw it')
    const toggle = c.find('input[type="checkbox"]')
    expect(toggle.element.checked).toBe(false)
    // A visible label wraps the control, so clicking the words works and it has a name.
    expect(toggle.element.closest('label').textContent.trim()).toBe('Heat map')
  })

  it('swaps the crop for the overlay and back', async () => {
    const c = card()
    const toggle = c.find('input[type="checkbox"]')
    await toggle.setValue(true)
    let img = c.find('img.face-crop')
    expect(img.attributes('src')).toBe(OVERLAY)
    expect(img.classes()).toContain('is-heatmap')
    expect(img.attributes('alt')).toContain('heat map')
    expect(img.attributes('alt')).toContain('“fake”')
    await toggle.setValue(false)
    img = c.find('img.face-crop')
    expect(img.attributes('src')).toBe(CROP)
    expect(img.classes()).not.toContain('is-heatmap')
  })

  it('says what the heat map means and does not mean, for the label it explains', () => {
    const c = card(face({ label: 'real', p_fake: 0.1, explanation: { method: 'grad-cam', explains: 'real', overlay: OVERLAY } }))
    const note = c.find('.heatmap-note')
    expect(note.text()).toContain('pushed the model most towards “real”')
    expect(note.text()).toContain('not why')
    expect(note.text()).toContain('not proof')
    // The switch is described by that line for a screen reader.
    const id = c.find('input[type="checkbox"]').attributes('aria-describedby')
    expect(id).toBeTruthy()
    expect(note.attributes('id')).toBe(id)
  })

  it('has no switch and no note when the face has no explanation', () => {
    const c = card(face({ explanation: undefined }))
    expect(c.find('input[type="checkbox"]').exists()).toBe(false)
    expect(c.find('.heatmap-note').exists()).toBe(false)
    expect(c.find('img.face-crop').attributes('src')).toBe(CROP)
  })

  it('ignores an overlay that is not a data: image (the CSP would block it anyway)', () => {
    const c = card(face({ explanation: { method: 'grad-cam', explains: 'fake', overlay: 'https://evil.example/x.png' } }))
    expect(c.find('input[type="checkbox"]').exists()).toBe(false)
  })

  it('turns the heat map off again for the next photo', async () => {
    const c = card()
    await c.find('input[type="checkbox"]').setValue(true)
    expect(c.find('img.face-crop').attributes('src')).toBe(OVERLAY)
    const next = face({ crop: 'data:image/png;base64,NEXT', explanation: { method: 'grad-cam', explains: 'fake', overlay: 'data:image/png;base64,NEXTHEAT' } })
    await c.setProps({ face: next })
    expect(c.find('input[type="checkbox"]').element.checked).toBe(false)
    expect(c.find('img.face-crop').attributes('src')).toBe('data:image/png;base64,NEXT')
  })

  it('gives each card its own switch', async () => {
    const a = card(face(), 0)
    const b = card(face(), 1)
    const idA = a.find('input[type="checkbox"]').attributes('aria-describedby')
    const idB = b.find('input[type="checkbox"]').attributes('aria-describedby')
    expect(idA).not.toBe(idB)
    await a.find('input[type="checkbox"]').setValue(true)
    expect(b.find('img.face-crop').attributes('src')).toBe(CROP)
    expect(b.find('img.face-crop').attributes('alt')).toBe('Face 2, aligned as the model saw it')
  })
})

describe('FaceCard feedback question', () => {
  const FEEDBACK = { file: new File([new Uint8Array([1])], 'me.jpg', { type: 'image/jpeg' }), url: '', retentionDays: 30 }
  const withToken = (token = 'tok.sig', extra = {}) => face({ feedback_token: token, ...extra })
  const mountCard = (f, feedback) => mount(FaceCard, { props: { face: f, index: 0, threshold: 0.5, feedback } })
  const question = (c) => c.find('fieldset.feedback')

  it('asks under the verdict when the page collects feedback and the face has a token', () => {
    const c = mountCard(withToken(), FEEDBACK)
    expect(question(c).exists()).toBe(true)
    expect(question(c).find('legend').text()).toBe('Is this right?')
    expect(c.find('.feedback-note').text()).toContain('for up to 30 days')
  })

  it('does not ask when feedback is off, or the face has no token', () => {
    expect(question(mountCard(withToken(), null)).exists()).toBe(false)
    expect(question(mountCard(face(), FEEDBACK)).exists()).toBe(false)
    expect(question(mountCard(withToken(''), FEEDBACK)).exists()).toBe(false)
  })

  it('starts a fresh, unticked question for a new answer', async () => {
    const c = mountCard(withToken('first'), FEEDBACK)
    const box = c.find('.feedback input[type="checkbox"]')
    await box.setValue(true)
    await c.setProps({ face: withToken('second') })
    expect(c.find('.feedback input[type="checkbox"]').element.checked).toBe(false)
  })
})

describe('FaceCard views of a two-view model', () => {
  const MODEL_VIEWS = [
    { name: 'cnn', title: 'Face network', detail: 'EfficientNet-Lite0 trained on aligned faces' },
    { name: 'clip', title: 'CLIP', detail: 'OpenAI CLIP ViT-B/16 image features, frozen, with a fitted head' },
  ]
  const twoView = (extra = {}) => face({ p_fake: 0.64, views: { clip: 0.81, cnn: 0.12 }, views_disagree: true, ...extra })
  const mountCard = (f, modelViews = MODEL_VIEWS) =>
    mount(FaceCard, { props: { face: f, index: 0, threshold: 0.5, modelViews } })
  const items = (c) => c.findAll('.view-scores li').map((li) => li.text())

  it('lists each view’s own chance of fake, titled and ordered as health lists them', () => {
    const c = mountCard(twoView({ views_disagree: false }))
    expect(c.find('.view-scores-lead').text()).toBe('Chance of fake, each view alone:')
    expect(items(c)).toEqual(['Face network: 12%', 'CLIP: 81%'])
    // The list is named by the line above it, for a screen reader.
    const list = c.find('.view-scores ul')
    expect(list.attributes('aria-labelledby')).toBe(c.find('.view-scores-lead').attributes('id'))
    // The combined answer stays the bar's.
    expect(c.find('.pbar-value').text()).toBe('64%')
  })

  it('falls back to the keys when health does not name the views', () => {
    expect(items(mountCard(twoView(), null))).toEqual(['clip: 81%', 'cnn: 12%'])
  })

  it('says the views disagree only when the server says so', () => {
    const note = 'The two views disagree about this face; the answer above combines them.'
    expect(mountCard(twoView()).find('.views-disagree').text()).toBe(note)
    expect(mountCard(twoView({ views_disagree: false })).find('.views-disagree').exists()).toBe(false)
    expect(mountCard(twoView({ views_disagree: undefined })).find('.views-disagree').exists()).toBe(false)
  })

  it('shows no views line for a one-view face', () => {
    const c = mountCard(face())
    expect(c.find('.view-scores').exists()).toBe(false)
    expect(c.text()).not.toContain('each view alone')
    expect(c.text()).not.toContain('disagree')
  })
})
